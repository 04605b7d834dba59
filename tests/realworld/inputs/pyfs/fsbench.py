import os, hashlib, json
root = "/box/work"  # a tree of 500 files: create, read, rename, list, delete
os.makedirs(root, exist_ok=True)
digest = hashlib.sha256()
for d in range(20):
    sub = f"{root}/d{d:02}"
    os.makedirs(sub, exist_ok=True)
    for f in range(25):
        data = (f"{d}:{f}:" * (40 + f)).encode()
        with open(f"{sub}/f{f:02}.txt", "wb") as fh:
            fh.write(data)
total = 0
for dirpath, dirnames, filenames in sorted(os.walk(root)):
    dirnames.sort()
    for name in sorted(filenames):
        with open(os.path.join(dirpath, name), "rb") as fh:
            data = fh.read()
        digest.update(data)
        total += len(data)
        os.rename(os.path.join(dirpath, name), os.path.join(dirpath, name + ".done"))
count = sum(len(fs) for _, _, fs in os.walk(root))
for dirpath, dirnames, filenames in os.walk(root, topdown=False):
    for name in filenames:
        os.unlink(os.path.join(dirpath, name))
    os.rmdir(dirpath)
print(json.dumps({"files": count, "bytes": total, "sha256": digest.hexdigest()}))
