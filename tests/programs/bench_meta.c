/* bench_meta: metadata-heavy workload for scripts/bench ("meta").
 *
 * usage: bench_meta <dir> [count]     (dir: a preopened directory; count default 5000)
 *
 * Creates <count> empty files in <dir>/bench_meta.d, stats each, lists the
 * directory, unlinks every file and removes the directory. Under wasijail
 * every one of these is a path operation brokered by the parent. On success
 * stdout is exactly:
 *   created=<count> stat=<count> listed=<count> unlinked=<count>
 * On failure: "ERR <step> <name>: <strerror>" on stdout and exit status 1.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void fail(const char *step, const char *name) {
    printf("ERR %s %s: %s\n", step, name, strerror(errno));
    exit(1);
}

int main(int argc, char **argv) {
    char dir[1024], path[1100];
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s <dir> [count]\n", argv[0]);
        return 2;
    }
    int count = argc > 2 ? atoi(argv[2]) : 5000;
    snprintf(dir, sizeof dir, "%s/bench_meta.d", argv[1]);
    if (mkdir(dir, 0755) != 0) fail("mkdir", dir);

    int created = 0, stated = 0, listed = 0, unlinked = 0;
    for (int i = 0; i < count; i++) {
        snprintf(path, sizeof path, "%s/f%05d", dir, i);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0) fail("create", path);
        if (close(fd) != 0) fail("close", path);
        created++;
    }
    for (int i = 0; i < count; i++) {
        struct stat st;
        snprintf(path, sizeof path, "%s/f%05d", dir, i);
        if (stat(path, &st) != 0) fail("stat", path);
        if (!S_ISREG(st.st_mode) || st.st_size != 0) {
            printf("ERR stat %s: not an empty regular file\n", path);
            return 1;
        }
        stated++;
    }
    DIR *d = opendir(dir);
    if (!d) fail("opendir", dir);
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == 'f') listed++;
    }
    if (errno) fail("readdir", dir);
    closedir(d);
    for (int i = 0; i < count; i++) {
        snprintf(path, sizeof path, "%s/f%05d", dir, i);
        if (unlink(path) != 0) fail("unlink", path);
        unlinked++;
    }
    if (rmdir(dir) != 0) fail("rmdir", dir);
    printf("created=%d stat=%d listed=%d unlinked=%d\n", created, stated, listed, unlinked);
    return 0;
}
