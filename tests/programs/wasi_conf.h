/* wasi_conf: WASI conformance checks, one section per run.
 *
 * usage: wasi_conf_p1 <section>    (wasi_snapshot_preview1)
 *        wasi_conf_p0 <section>    (wasi_unstable: the same checks, preview0 layouts)
 *
 * The module is run with one preopen, "/sandbox", at fd 3 (the harness checks
 * this and prints it first). The harness puts these in it beforehand:
 *   data.txt     "0123456789"
 *   up_link  ->  ../outside.txt             (a relative link that leaves the preopen)
 *   abs_link ->  <absolute path of outside.txt>
 * and outside.txt beside the preopen, never reachable from inside.
 *
 * Every WASI function is called through its raw import (declared below, with
 * guest pointers as plain u32 so bad ones can be passed), and every line
 * printed is "what: result", where result is "ok" or the WASI errno's name,
 * plus values read back. The output is compared exactly by the tests, and the
 * preview1 build is also run under wasmtime-py's own WASI for a differential
 * test. Nothing printed depends on fd numbers, inode numbers or timing, except
 * through explicit comparisons ("yes"/"no").
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wasi/api.h> /* constants only: rights, flags, filetypes (equal in both snapshots) */

#ifdef WASI_P0
#define WASI_MODULE "wasi_unstable"
#else
#define WASI_MODULE "wasi_snapshot_preview1"
#endif
#define IMPORT(name) __attribute__((import_module(WASI_MODULE), import_name(#name)))

typedef uint32_t ptr_t; /* a guest pointer, passed as-is */
#define P(x) ((ptr_t)(uintptr_t)(x))

IMPORT(args_get) int32_t w_args_get(ptr_t, ptr_t);
IMPORT(args_sizes_get) int32_t w_args_sizes_get(ptr_t, ptr_t);
IMPORT(environ_get) int32_t w_environ_get(ptr_t, ptr_t);
IMPORT(environ_sizes_get) int32_t w_environ_sizes_get(ptr_t, ptr_t);
IMPORT(clock_res_get) int32_t w_clock_res_get(int32_t, ptr_t);
IMPORT(clock_time_get) int32_t w_clock_time_get(int32_t, uint64_t, ptr_t);
IMPORT(fd_advise) int32_t w_fd_advise(int32_t, uint64_t, uint64_t, int32_t);
IMPORT(fd_allocate) int32_t w_fd_allocate(int32_t, uint64_t, uint64_t);
IMPORT(fd_close) int32_t w_fd_close(int32_t);
IMPORT(fd_datasync) int32_t w_fd_datasync(int32_t);
IMPORT(fd_fdstat_get) int32_t w_fd_fdstat_get(int32_t, ptr_t);
IMPORT(fd_fdstat_set_flags) int32_t w_fd_fdstat_set_flags(int32_t, int32_t);
IMPORT(fd_fdstat_set_rights) int32_t w_fd_fdstat_set_rights(int32_t, uint64_t, uint64_t);
IMPORT(fd_filestat_get) int32_t w_fd_filestat_get(int32_t, ptr_t);
IMPORT(fd_filestat_set_size) int32_t w_fd_filestat_set_size(int32_t, uint64_t);
IMPORT(fd_filestat_set_times) int32_t w_fd_filestat_set_times(int32_t, uint64_t, uint64_t, int32_t);
IMPORT(fd_pread) int32_t w_fd_pread(int32_t, ptr_t, int32_t, uint64_t, ptr_t);
IMPORT(fd_prestat_get) int32_t w_fd_prestat_get(int32_t, ptr_t);
IMPORT(fd_prestat_dir_name) int32_t w_fd_prestat_dir_name(int32_t, ptr_t, int32_t);
IMPORT(fd_pwrite) int32_t w_fd_pwrite(int32_t, ptr_t, int32_t, uint64_t, ptr_t);
IMPORT(fd_read) int32_t w_fd_read(int32_t, ptr_t, int32_t, ptr_t);
IMPORT(fd_readdir) int32_t w_fd_readdir(int32_t, ptr_t, int32_t, uint64_t, ptr_t);
IMPORT(fd_renumber) int32_t w_fd_renumber(int32_t, int32_t);
IMPORT(fd_seek) int32_t w_fd_seek(int32_t, int64_t, int32_t, ptr_t);
IMPORT(fd_sync) int32_t w_fd_sync(int32_t);
IMPORT(fd_tell) int32_t w_fd_tell(int32_t, ptr_t);
IMPORT(fd_write) int32_t w_fd_write(int32_t, ptr_t, int32_t, ptr_t);
IMPORT(path_create_directory) int32_t w_path_create_directory(int32_t, ptr_t, int32_t);
IMPORT(path_filestat_get) int32_t w_path_filestat_get(int32_t, int32_t, ptr_t, int32_t, ptr_t);
IMPORT(path_filestat_set_times) int32_t w_path_filestat_set_times(int32_t, int32_t, ptr_t, int32_t, uint64_t, uint64_t, int32_t);
IMPORT(path_link) int32_t w_path_link(int32_t, int32_t, ptr_t, int32_t, int32_t, ptr_t, int32_t);
IMPORT(path_open) int32_t w_path_open(int32_t, int32_t, ptr_t, int32_t, int32_t, uint64_t, uint64_t, int32_t, ptr_t);
IMPORT(path_readlink) int32_t w_path_readlink(int32_t, ptr_t, int32_t, ptr_t, int32_t, ptr_t);
IMPORT(path_remove_directory) int32_t w_path_remove_directory(int32_t, ptr_t, int32_t);
IMPORT(path_rename) int32_t w_path_rename(int32_t, ptr_t, int32_t, int32_t, ptr_t, int32_t);
IMPORT(path_symlink) int32_t w_path_symlink(ptr_t, int32_t, int32_t, ptr_t, int32_t);
IMPORT(path_unlink_file) int32_t w_path_unlink_file(int32_t, ptr_t, int32_t);
IMPORT(poll_oneoff) int32_t w_poll_oneoff(ptr_t, ptr_t, int32_t, ptr_t);
IMPORT(proc_exit) _Noreturn void w_proc_exit(int32_t);
IMPORT(proc_raise) int32_t w_proc_raise(int32_t);
IMPORT(sched_yield) int32_t w_sched_yield(void);
IMPORT(random_get) int32_t w_random_get(ptr_t, int32_t);
#ifndef WASI_P0
IMPORT(sock_accept) int32_t w_sock_accept(int32_t, int32_t, ptr_t);
#endif
IMPORT(sock_recv) int32_t w_sock_recv(int32_t, ptr_t, int32_t, int32_t, ptr_t, ptr_t);
IMPORT(sock_send) int32_t w_sock_send(int32_t, ptr_t, int32_t, int32_t, ptr_t);
IMPORT(sock_shutdown) int32_t w_sock_shutdown(int32_t, int32_t);

/* --- the layouts that differ between the snapshots ----------------------- */
#ifdef WASI_P0
/* filestat: dev u64, ino u64, filetype u8 @16, nlink u32 @20, size @24, atim @32, mtim @40, ctim @48 */
#define FILESTAT_SIZE 56
#define FS_NLINK_OFF 20
#define FS_NLINK_BYTES 4
#define FS_SIZE_OFF 24
#define WHENCE_SET 2
#define WHENCE_CUR 0
#define WHENCE_END 1
/* subscription: userdata @0, tag @8, clock: identifier @16, clock_id @24, timeout @32, precision @40, flags @48 */
#define SUB_SIZE 56
#define SUB_CLOCK_OFF 24
#else
#define FILESTAT_SIZE 64
#define FS_NLINK_OFF 24
#define FS_NLINK_BYTES 8
#define FS_SIZE_OFF 32
#define WHENCE_SET 0
#define WHENCE_CUR 1
#define WHENCE_END 2
#define SUB_SIZE 48
#define SUB_CLOCK_OFF 16
#endif
#define SUB_FD_OFF 16
#define EVENT_SIZE 32
#define SIGNAL_USR1 10 /* wasi-libc of 2022 no longer defines the signal numbers */

static const char *ERRNO_NAMES[] = {
    "ok", "E2BIG", "EACCES", "EADDRINUSE", "EADDRNOTAVAIL", "EAFNOSUPPORT", "EAGAIN",
    "EALREADY", "EBADF", "EBADMSG", "EBUSY", "ECANCELED", "ECHILD", "ECONNABORTED",
    "ECONNREFUSED", "ECONNRESET", "EDEADLK", "EDESTADDRREQ", "EDOM", "EDQUOT", "EEXIST",
    "EFAULT", "EFBIG", "EHOSTUNREACH", "EIDRM", "EILSEQ", "EINPROGRESS", "EINTR", "EINVAL",
    "EIO", "EISCONN", "EISDIR", "ELOOP", "EMFILE", "EMLINK", "EMSGSIZE", "EMULTIHOP",
    "ENAMETOOLONG", "ENETDOWN", "ENETRESET", "ENETUNREACH", "ENFILE", "ENOBUFS", "ENODEV",
    "ENOENT", "ENOEXEC", "ENOLCK", "ENOLINK", "ENOMEM", "ENOMSG", "ENOPROTOOPT", "ENOSPC",
    "ENOSYS", "ENOTCONN", "ENOTDIR", "ENOTEMPTY", "ENOTRECOVERABLE", "ENOTSOCK", "ENOTSUP",
    "ENOTTY", "ENXIO", "EOVERFLOW", "EOWNERDEAD", "EPERM", "EPIPE", "EPROTO",
    "EPROTONOSUPPORT", "EPROTOTYPE", "ERANGE", "EROFS", "ESPIPE", "ESRCH", "ESTALE",
    "ETIMEDOUT", "ETXTBSY", "EXDEV", "ENOTCAPABLE",
};

static const char *en(int e) {
    static char other[16];
    if (e >= 0 && e < (int)(sizeof ERRNO_NAMES / sizeof ERRNO_NAMES[0])) return ERRNO_NAMES[e];
    snprintf(other, sizeof other, "errno %d", e);
    return other;
}

static const char *TYPE_NAMES[] = {
    "UNKNOWN", "BLOCK_DEVICE", "CHARACTER_DEVICE", "DIRECTORY", "REGULAR_FILE",
    "SOCKET_DGRAM", "SOCKET_STREAM", "SYMBOLIC_LINK",
};

static const char *tn(int t) { return t >= 0 && t < 8 ? TYPE_NAMES[t] : "?"; }

static void show(const char *what, int e) { printf("%s: %s\n", what, en(e)); }

#define D 3 /* the preopen, checked by main */

static const uint64_t FILE_RIGHTS =
    __WASI_RIGHTS_FD_READ | __WASI_RIGHTS_FD_WRITE | __WASI_RIGHTS_FD_SEEK | __WASI_RIGHTS_FD_TELL
    | __WASI_RIGHTS_FD_FILESTAT_GET | __WASI_RIGHTS_FD_FILESTAT_SET_SIZE
    | __WASI_RIGHTS_FD_FILESTAT_SET_TIMES | __WASI_RIGHTS_FD_ADVISE | __WASI_RIGHTS_FD_ALLOCATE
    | __WASI_RIGHTS_FD_DATASYNC | __WASI_RIGHTS_FD_SYNC | __WASI_RIGHTS_FD_FDSTAT_SET_FLAGS
    | __WASI_RIGHTS_POLL_FD_READWRITE;
static const uint64_t READ_RIGHTS = __WASI_RIGHTS_FD_READ | __WASI_RIGHTS_FD_SEEK
    | __WASI_RIGHTS_FD_TELL | __WASI_RIGHTS_FD_FILESTAT_GET | __WASI_RIGHTS_POLL_FD_READWRITE;
static const uint64_t WRITE_RIGHTS = __WASI_RIGHTS_FD_WRITE | __WASI_RIGHTS_FD_SEEK
    | __WASI_RIGHTS_FD_TELL | __WASI_RIGHTS_FD_FILESTAT_GET;
static const uint64_t DIR_RIGHTS = __WASI_RIGHTS_FD_READ | __WASI_RIGHTS_FD_READDIR
    | __WASI_RIGHTS_PATH_OPEN | __WASI_RIGHTS_FD_FILESTAT_GET | __WASI_RIGHTS_PATH_FILESTAT_GET
    | __WASI_RIGHTS_PATH_CREATE_FILE | __WASI_RIGHTS_FD_FILESTAT_SET_TIMES | __WASI_RIGHTS_FD_SYNC;

/* --- small wrappers -------------------------------------------------------- */

static int op(int dir, int lookup, const char *path, int oflags, uint64_t rights, int fdflags, int *fd) {
    return w_path_open(dir, lookup, P(path), strlen(path), oflags, rights, rights, fdflags, P(fd));
}

static int wr(int fd, const char *s, uint32_t *n) {
    __wasi_ciovec_t iov = {(const uint8_t *)s, strlen(s)};
    return w_fd_write(fd, P(&iov), 1, P(n));
}

static int rd(int fd, char *buf, uint32_t len, uint32_t *n) {
    __wasi_iovec_t iov = {(uint8_t *)buf, len};
    return w_fd_read(fd, P(&iov), 1, P(n));
}

typedef struct {
    uint64_t dev, ino, nlink, size, atim, mtim, ctim;
    int type;
} fstat_t;

static uint64_t le(const unsigned char *p, int bytes) {
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static void decode_filestat(const unsigned char *b, fstat_t *st) {
    st->dev = le(b, 8);
    st->ino = le(b + 8, 8);
    st->type = b[16];
    st->nlink = le(b + FS_NLINK_OFF, FS_NLINK_BYTES);
    st->size = le(b + FS_SIZE_OFF, 8);
    st->atim = le(b + FS_SIZE_OFF + 8, 8);
    st->mtim = le(b + FS_SIZE_OFF + 16, 8);
    st->ctim = le(b + FS_SIZE_OFF + 24, 8);
}

static int fdstat(int fd, fstat_t *st) {
    unsigned char b[FILESTAT_SIZE + 8];
    memset(b, 0xAA, sizeof b);
    int e = w_fd_filestat_get(fd, P(b));
    if (!e) decode_filestat(b, st);
    if (!e && b[FILESTAT_SIZE] != 0xAA) printf("fd_filestat_get wrote past its %d bytes\n", FILESTAT_SIZE);
    return e;
}

static int pathstat(int dir, int follow, const char *path, fstat_t *st) {
    unsigned char b[FILESTAT_SIZE + 8];
    memset(b, 0xAA, sizeof b);
    int e = w_path_filestat_get(dir, follow, P(path), strlen(path), P(b));
    if (!e) decode_filestat(b, st);
    if (!e && b[FILESTAT_SIZE] != 0xAA) printf("path_filestat_get wrote past its %d bytes\n", FILESTAT_SIZE);
    return e;
}

static void sub_fd(int i, uint64_t userdata, int type, int fd);
static void do_poll(const char *what, int nsubs);

static void show_stat(const char *what, int e, const fstat_t *st) {
    if (e)
        printf("%s: %s\n", what, en(e));
    else if (st->type == __WASI_FILETYPE_DIRECTORY) /* a directory's size depends on the filesystem */
        printf("%s: ok type=%s\n", what, tn(st->type));
    else
        printf("%s: ok type=%s size=%llu\n", what, tn(st->type), (unsigned long long)st->size);
}

static void show_path(const char *what, int dir, int follow, const char *path) {
    fstat_t st;
    show_stat(what, pathstat(dir, follow, path, &st), &st);
}

static int seek(int fd, int64_t off, int whence, uint64_t *pos) { return w_fd_seek(fd, off, whence, P(pos)); }

static void show_read(const char *what, int fd, uint32_t len) {
    char buf[256];
    uint32_t n = 0;
    int e = rd(fd, buf, len, &n);
    if (e) {
        printf("%s: %s\n", what, en(e));
        return;
    }
    printf("%s: ok \"", what);
    for (uint32_t i = 0; i < n; i++) { /* NUL bytes show, so a hole in a file is seen */
        unsigned char c = buf[i];
        if (c == '\n') printf("\\n");
        else if (c < 32 || c > 126) printf("\\x%02x", c);
        else putchar(c);
    }
    printf("\"\n");
}

static void show_content(const char *what, int dir, const char *path) {
    int fd;
    int e = op(dir, 1, path, 0, READ_RIGHTS, 0, &fd);
    if (e) {
        printf("%s: %s\n", what, en(e));
        return;
    }
    show_read(what, fd, 200);
    w_fd_close(fd);
}

static int mkfile(const char *path, const char *content) {
    int fd;
    uint32_t n;
    int e = op(D, 0, path, __WASI_OFLAGS_CREAT | __WASI_OFLAGS_TRUNC, FILE_RIGHTS, 0, &fd);
    if (e) return e;
    if (*content) e = wr(fd, content, &n);
    w_fd_close(fd);
    return e;
}

static int mkdir_(const char *path) { return w_path_create_directory(D, P(path), strlen(path)); }
static int rmdir_(const char *path) { return w_path_remove_directory(D, P(path), strlen(path)); }
static int unlink_(const char *path) { return w_path_unlink_file(D, P(path), strlen(path)); }
static int symlink_(const char *target, const char *path) {
    return w_path_symlink(P(target), strlen(target), D, P(path), strlen(path));
}
static int rename_(const char *from, const char *to) {
    return w_path_rename(D, P(from), strlen(from), D, P(to), strlen(to));
}
static int link_(int follow, const char *from, const char *to) {
    return w_path_link(D, follow, P(from), strlen(from), D, P(to), strlen(to));
}

static const char *yes(int b) { return b ? "yes" : "no"; }

static void show_rights(const char *what, int fd) {
    __wasi_fdstat_t st;
    int e = w_fd_fdstat_get(fd, P(&st));
    if (e) {
        printf("%s: %s\n", what, en(e));
        return;
    }
    uint64_t r = st.fs_rights_base;
    /* The rights that matter for the kind of descriptor (see sec_rights for the rest). */
    if (st.fs_filetype == __WASI_FILETYPE_DIRECTORY)
        printf("%s: ok type=%s flags=%u readdir=%s path_open=%s seek=%s\n", what, tn(st.fs_filetype),
               st.fs_flags, yes(r & __WASI_RIGHTS_FD_READDIR), yes(r & __WASI_RIGHTS_PATH_OPEN),
               yes(r & __WASI_RIGHTS_FD_SEEK));
    else
        printf("%s: ok type=%s flags=%u read=%s write=%s seek=%s tell=%s\n", what, tn(st.fs_filetype),
               st.fs_flags, yes(r & __WASI_RIGHTS_FD_READ), yes(r & __WASI_RIGHTS_FD_WRITE),
               yes(r & __WASI_RIGHTS_FD_SEEK), yes(r & __WASI_RIGHTS_FD_TELL));
}

/* --- fd: data calls on files ------------------------------------------------ */

static void sec_fd(void) {
    int fd, ro, wo;
    uint32_t n;
    uint64_t pos;
    char buf[64];
    fstat_t st;

    show("path_open create", op(D, 0, "f.txt", __WASI_OFLAGS_CREAT | __WASI_OFLAGS_TRUNC, FILE_RIGHTS, 0, &fd));
    __wasi_ciovec_t two[2] = {{(const uint8_t *)"hello ", 6}, {(const uint8_t *)"world\n", 6}};
    int e = w_fd_write(fd, P(two), 2, P(&n));
    printf("fd_write 2 iovecs: %s n=%u\n", en(e), n);
    if (!e && n < 12) { /* a short write is allowed: finish as libc would */
        uint32_t more;
        __wasi_ciovec_t rest = {(const uint8_t *)"hello world\n" + n, 12 - n};
        w_fd_write(fd, P(&rest), 1, P(&more));
    }
    e = w_fd_write(fd, P(two), 0, P(&n));
    printf("fd_write 0 iovecs: %s n=%u\n", en(e), n);
    e = w_fd_tell(fd, P(&pos));
    printf("fd_tell: %s %llu\n", en(e), (unsigned long long)pos);
    e = seek(fd, 0, WHENCE_SET, &pos);
    printf("fd_seek SET 0: %s %llu\n", en(e), (unsigned long long)pos);
    show_read("fd_read 5", fd, 5);
    memset(buf, 0, sizeof buf);
    __wasi_iovec_t riov[2] = {{(uint8_t *)buf, 3}, {(uint8_t *)buf + 3, 20}};
    e = w_fd_read(fd, P(riov), 2, P(&n));
    printf("fd_read 2 iovecs: %s n=%u\n", en(e), n);
    e = seek(fd, -6, WHENCE_END, &pos);
    printf("fd_seek END -6: %s %llu\n", en(e), (unsigned long long)pos);
    e = seek(fd, 2, WHENCE_CUR, &pos);
    printf("fd_seek CUR +2: %s %llu\n", en(e), (unsigned long long)pos);
    show_read("fd_read after seek", fd, 10);
    show_read("fd_read at end", fd, 10);
    e = seek(fd, -1, WHENCE_SET, &pos);
    printf("fd_seek SET -1: %s\n", en(e));
    e = seek(fd, -100, WHENCE_CUR, &pos);
    printf("fd_seek CUR -100: %s\n", en(e));
    e = seek(fd, 100, WHENCE_SET, &pos);
    printf("fd_seek past the end: %s %llu\n", en(e), (unsigned long long)pos);

    __wasi_iovec_t piov = {(uint8_t *)buf, 5};
    memset(buf, 0, sizeof buf);
    e = w_fd_pread(fd, P(&piov), 1, 6, P(&n));
    printf("fd_pread 5 at 6: %s \"%.*s\"\n", en(e), (int)n, buf);
    __wasi_ciovec_t wiov = {(const uint8_t *)"HELLO", 5};
    e = w_fd_pwrite(fd, P(&wiov), 1, 0, P(&n));
    printf("fd_pwrite 5 at 0: %s n=%u\n", en(e), n);
    e = w_fd_tell(fd, P(&pos));
    printf("fd_tell after pread/pwrite: %s %llu\n", en(e), (unsigned long long)pos);
    show_content("content", D, "f.txt");

    e = fdstat(fd, &st);
    printf("fd_filestat_get: %s type=%s size=%llu nlink=%llu\n", en(e), tn(st.type),
           (unsigned long long)st.size, (unsigned long long)st.nlink);
    show("fd_filestat_set_size 5", w_fd_filestat_set_size(fd, 5));
    show_content("content after shrink", D, "f.txt");
    show("fd_filestat_set_size 8", w_fd_filestat_set_size(fd, 8));
    memset(buf, 'x', sizeof buf);
    __wasi_iovec_t eight = {(uint8_t *)buf, 8};
    e = w_fd_pread(fd, P(&eight), 1, 0, P(&n));
    printf("grown bytes are zero: %s n=%u %s\n", en(e), n, yes(buf[5] == 0 && buf[6] == 0 && buf[7] == 0));
    show("fd_advise NORMAL", w_fd_advise(fd, 0, 8, __WASI_ADVICE_NORMAL));
    show("fd_advise DONTNEED", w_fd_advise(fd, 0, 0, __WASI_ADVICE_DONTNEED));
    e = w_fd_allocate(fd, 0, 100);
    fdstat(fd, &st);
    printf("fd_allocate 100: %s size=%llu\n", en(e), (unsigned long long)st.size);
    w_fd_filestat_set_size(fd, 8); /* back to where both runtimes agree */
    show("fd_datasync", w_fd_datasync(fd));
    show("fd_sync", w_fd_sync(fd));
    show_rights("fd_fdstat_get rw file", fd);

    show("fd_fdstat_set_flags APPEND", w_fd_fdstat_set_flags(fd, __WASI_FDFLAGS_APPEND));
    show_rights("fdstat after APPEND", fd);
    seek(fd, 0, WHENCE_SET, &pos);
    show("fd_write in append mode", wr(fd, "END", &n));
    show_content("content after append", D, "f.txt");
    show("fd_fdstat_set_flags 0", w_fd_fdstat_set_flags(fd, 0));
    show_rights("fdstat after clearing", fd);
    show("fd_fdstat_set_flags SYNC", w_fd_fdstat_set_flags(fd, __WASI_FDFLAGS_SYNC));
    show("fd_fdstat_set_flags NONBLOCK", w_fd_fdstat_set_flags(fd, __WASI_FDFLAGS_NONBLOCK));
    show_rights("fdstat after NONBLOCK", fd);
    show("fd_close", w_fd_close(fd));
    show("fd_close again", w_fd_close(fd));
    show("fd_read closed", rd(fd, buf, 4, &n));
    show("fd_filestat_get closed", fdstat(fd, &st));

    /* Open modes: the kernel's answer for the wrong direction is EBADF. */
    show("path_open APPEND", op(D, 0, "f.txt", 0, FILE_RIGHTS, __WASI_FDFLAGS_APPEND, &fd));
    show_rights("fdstat opened with APPEND", fd);
    show("write opened with APPEND", wr(fd, "!", &n));
    show_content("content after APPEND open", D, "f.txt");
    w_fd_close(fd);
    show("path_open read-only", op(D, 0, "data.txt", 0, READ_RIGHTS, 0, &ro));
    show_rights("fdstat read-only", ro);
    show("fd_write read-only", wr(ro, "x", &n));
    show("fd_pwrite read-only", w_fd_pwrite(ro, P(&wiov), 1, 0, P(&n)));
    show("fd_filestat_set_size read-only", w_fd_filestat_set_size(ro, 0));
    show_read("fd_read read-only", ro, 4);
    show("path_open write-only", op(D, 0, "data.txt", 0, WRITE_RIGHTS, 0, &wo));
    show_rights("fdstat write-only", wo);
    show("fd_read write-only", rd(wo, buf, 4, &n));
    show("fd_pread write-only", w_fd_pread(wo, P(&piov), 1, 0, P(&n)));
    w_fd_close(ro);
    w_fd_close(wo);
    show_content("data.txt unchanged", D, "data.txt");

    /* Data calls on a directory. */
    int dir;
    show("path_open dir", op(D, 0, ".", __WASI_OFLAGS_DIRECTORY, DIR_RIGHTS, 0, &dir));
    show("fd_read dir", rd(dir, buf, 4, &n));
    show("fd_write dir", wr(dir, "x", &n));
    show("fd_pread dir", w_fd_pread(dir, P(&piov), 1, 0, P(&n)));
    show("fd_pwrite dir", w_fd_pwrite(dir, P(&wiov), 1, 0, P(&n)));
    show("fd_seek dir", seek(dir, 0, WHENCE_SET, &pos));
    show("fd_tell dir", w_fd_tell(dir, P(&pos)));
    show("fd_filestat_set_size dir", w_fd_filestat_set_size(dir, 0));
    show("fd_advise dir", w_fd_advise(dir, 0, 0, __WASI_ADVICE_NORMAL));
    show("fd_allocate dir", w_fd_allocate(dir, 0, 1));
    show("fd_datasync dir", w_fd_datasync(dir));
    show("fd_sync dir", w_fd_sync(dir));
    show("fd_fdstat_set_flags dir", w_fd_fdstat_set_flags(dir, 0));
    e = fdstat(dir, &st);
    printf("fd_filestat_get dir: %s type=%s\n", en(e), tn(st.type));
    w_fd_close(dir);
    e = fdstat(D, &st);
    printf("fd_filestat_get preopen: %s type=%s\n", en(e), tn(st.type));

    /* Bad descriptors. */
    show("fd_write bad fd", wr(77, "x", &n));
    show("fd_seek bad fd", seek(77, 0, WHENCE_SET, &pos));
    show("fd_fdstat_get bad fd", w_fd_fdstat_get(77, P(buf)));
    show("fd_sync bad fd", w_fd_sync(77));
    show("fd_close bad fd", w_fd_close(77));
}

/* --- stdio ------------------------------------------------------------------- */

static int isatty_(int fd) {
    /* wasi-libc's rule: a character device without seek or tell */
    __wasi_fdstat_t st;
    if (w_fd_fdstat_get(fd, P(&st))) return 0;
    return st.fs_filetype == __WASI_FILETYPE_CHARACTER_DEVICE
        && !(st.fs_rights_base & (__WASI_RIGHTS_FD_SEEK | __WASI_RIGHTS_FD_TELL));
}

static void show_stdio_kinds(void) {
    for (int fd = 0; fd < 3; fd++) {
        char what[32];
        snprintf(what, sizeof what, "fdstat %d", fd);
        show_rights(what, fd);
        printf("isatty %d: %s\n", fd, yes(isatty_(fd)));
    }
}

static void sec_stdio(void) {
    uint64_t pos;
    uint32_t n;
    char buf[8];
    __wasi_iovec_t iov = {(uint8_t *)buf, 4};
    fstat_t st;
    fflush(stdout);
    show_stdio_kinds();
    int e = fdstat(1, &st);
    printf("fd_filestat_get stdout: %s type=%s size=%llu ino=%llu\n", en(e), tn(st.type),
           (unsigned long long)st.size, (unsigned long long)st.ino);
    show("fd_seek stdin", seek(0, 0, WHENCE_CUR, &pos));
    show("fd_tell stdout", w_fd_tell(1, P(&pos)));
    show("fd_pread stdin", w_fd_pread(0, P(&iov), 1, 0, P(&n)));
    show("fd_pwrite stdout", w_fd_pwrite(1, P(&iov), 1, 0, P(&n)));
    show("fd_write stdin", wr(0, "x", &n));
    show("fd_read stdout", rd(1, buf, 4, &n));
    show("fd_filestat_set_size stdout", w_fd_filestat_set_size(1, 0));
    show("fd_filestat_set_times stdout", w_fd_filestat_set_times(1, 0, 0, __WASI_FSTFLAGS_MTIM_NOW));
    show("fd_advise stdout", w_fd_advise(1, 0, 0, __WASI_ADVICE_NORMAL));
    show("fd_allocate stdout", w_fd_allocate(1, 0, 1));
    show("fd_datasync stdout", w_fd_datasync(1));
    show("fd_sync stdout", w_fd_sync(1));
    show("fd_fdstat_set_flags stdout", w_fd_fdstat_set_flags(1, 0));
    show("fd_readdir stdout", w_fd_readdir(1, P(buf), sizeof buf, 0, P(&n)));
    show("path_open under stdout", op(1, 0, "x", 0, READ_RIGHTS, 0, (int *)buf));
    show_read("fd_read stdin", 0, 100);
    fflush(stdout);
    show("fd_write stdout", wr(1, "written to stdout\n", &n));
}

/* Run with stdin and stdout on pipes; the harness writes "hello\n" to stdin
 * when it likes, and closes it once it has read "read stdin pipe" back. */
static void sec_pipes(void) {
    show_stdio_kinds();
    sub_fd(0, 71, __WASI_EVENTTYPE_FD_WRITE, 1);
    do_poll("stdout pipe writable", 1);
    fflush(stdout);
    sub_fd(0, 72, __WASI_EVENTTYPE_FD_READ, 0);
    do_poll("stdin pipe readable", 1);
    show_read("read stdin pipe", 0, 100);
    fflush(stdout);
    sub_fd(0, 73, __WASI_EVENTTYPE_FD_READ, 0);
    do_poll("stdin pipe closed", 1);
    show_read("read closed stdin pipe", 0, 100);
}

/* Run with stdin and stdout on connected stream sockets; the harness has sent
 * "ping" to stdin and reads what comes out of stdout. */
static void sec_sockets(void) {
    char buf[64];
    uint32_t n = 0;
    uint16_t flags = 0;
    __wasi_iovec_t iov = {(uint8_t *)buf, sizeof buf};
    int e = w_sock_recv(0, P(&iov), 1, __WASI_RIFLAGS_RECV_PEEK, P(&n), P(&flags));
    printf("sock_recv peek: %s \"%.*s\" flags=%u\n", en(e), (int)n, buf, flags);
    e = w_sock_recv(0, P(&iov), 1, 0, P(&n), P(&flags));
    printf("sock_recv: %s \"%.*s\" flags=%u\n", en(e), (int)n, buf, flags);
    __wasi_ciovec_t out[2] = {{(const uint8_t *)"po", 2}, {(const uint8_t *)"ng\n", 3}};
    e = w_sock_send(1, P(out), 2, 0, P(&n));
    printf("sock_send: %s n=%u\n", en(e), n);
    show("sock_send on stdin", w_sock_send(0, P(out), 1, 0, P(&n)));
    show("sock_recv on stdout", w_sock_recv(1, P(&iov), 1, 0, P(&n), P(&flags)));
    show("sock_shutdown how 0", w_sock_shutdown(0, 0));
    show("sock_shutdown stdin RD", w_sock_shutdown(0, __WASI_SDFLAGS_RD));
    e = w_sock_recv(0, P(&iov), 1, 0, P(&n), P(&flags));
    printf("sock_recv after shutdown: %s n=%u\n", en(e), n);
#ifndef WASI_P0
    int fd;
    show("sock_accept stdin", w_sock_accept(0, 0, P(&fd)));
#endif
    show_rights("fdstat 0", 0);
}

/* --- rights -------------------------------------------------------------------- */

static int drop_rights(int fd, uint64_t rights) {
    __wasi_fdstat_t st;
    int e = w_fd_fdstat_get(fd, P(&st));
    return e ? e : w_fd_fdstat_set_rights(fd, st.fs_rights_base & ~rights, st.fs_rights_inheriting & ~rights);
}

static void sec_rights(void) {
    int fd, dir;
    uint32_t n;
    char buf[8];
    show_rights("preopen", D);
    show("path_open sub dir", mkdir_("sub"));
    show("path_open dir", op(D, 0, "sub", __WASI_OFLAGS_DIRECTORY, DIR_RIGHTS, 0, &dir));
    show_rights("opened dir", dir);
    show("path_open file", op(D, 0, "data.txt", 0, FILE_RIGHTS, 0, &fd));
    show_rights("file", fd);
    __wasi_fdstat_t fst;
    w_fd_fdstat_get(fd, P(&fst));
    printf("file rights include directory rights: %s\n", yes(fst.fs_rights_base & __WASI_RIGHTS_PATH_OPEN));
    show("drop FD_WRITE", drop_rights(fd, __WASI_RIGHTS_FD_WRITE));
    show_rights("after dropping FD_WRITE", fd);
    show("fd_write without FD_WRITE", wr(fd, "x", &n));
    show_read("fd_read still allowed", fd, 4);
    show("drop FD_READ and FD_SEEK", drop_rights(fd, __WASI_RIGHTS_FD_READ | __WASI_RIGHTS_FD_SEEK));
    show("fd_read without FD_READ", rd(fd, buf, 4, &n));
    show("fd_seek without FD_SEEK", seek(fd, 0, WHENCE_SET, (uint64_t *)buf));
    show("fd_tell still allowed", w_fd_tell(fd, P(buf)));
    show("add FD_WRITE back", w_fd_fdstat_set_rights(fd, __WASI_RIGHTS_FD_TELL | __WASI_RIGHTS_FD_WRITE, 0));
    show("fd_fdstat_set_rights bad fd", w_fd_fdstat_set_rights(77, 0, 0));
    w_fd_close(fd);
    show("drop PATH_OPEN on dir", drop_rights(dir, __WASI_RIGHTS_PATH_OPEN));
    show_rights("dir after dropping PATH_OPEN", dir);
    show("path_open without PATH_OPEN", op(dir, 0, "x", __WASI_OFLAGS_CREAT, FILE_RIGHTS, 0, &fd));
    show("drop FD_READDIR on dir", drop_rights(dir, __WASI_RIGHTS_FD_READDIR));
    show("fd_readdir without FD_READDIR", w_fd_readdir(dir, P(buf), sizeof buf, 0, P(&n)));
    w_fd_close(dir);
    show_content("data.txt unchanged", D, "data.txt");
}

/* --- paths: create, remove, rename, link ------------------------------------- */

static void sec_path(void) {
    int fd;
    show("path_create_directory d", mkdir_("d"));
    show("path_create_directory d again", mkdir_("d"));
    show("path_create_directory d/sub", mkdir_("d/sub"));
    show("path_create_directory missing/x", mkdir_("missing/x"));
    show("path_create_directory trailing slash", mkdir_("e/"));
    show("path_create_directory on a file", mkdir_("data.txt"));
    show("path_create_directory data.txt/x", mkdir_("data.txt/x"));
    show("create d/file", mkfile("d/file", "abc"));
    show("path_remove_directory non-empty", rmdir_("d"));
    show("path_remove_directory a file", rmdir_("data.txt"));
    show("path_remove_directory missing", rmdir_("nope"));
    show("path_remove_directory trailing slash", rmdir_("d/sub/"));
    show("path_remove_directory e", rmdir_("e"));
    show("path_remove_directory .", rmdir_("."));
    show("path_unlink_file a dir", unlink_("d"));
    show("path_unlink_file dir with slash", unlink_("d/"));
    show("path_unlink_file file with slash", unlink_("d/file/"));
    show("path_unlink_file missing", unlink_("nope"));
    show("path_unlink_file d/file", unlink_("d/file"));
    show("path_unlink_file d/file again", unlink_("d/file"));
    show("path_remove_directory d (d/sub is left)", rmdir_("d"));

    mkfile("a.txt", "A");
    mkfile("b.txt", "B");
    mkdir_("dir1");
    mkdir_("dir2");
    mkdir_("full");
    mkfile("full/x", "");
    show("path_rename file to new", rename_("a.txt", "c.txt"));
    show_path("stat old name", D, 0, "a.txt");
    show_content("new name", D, "c.txt");
    show("path_rename file over file", rename_("c.txt", "b.txt"));
    show_content("replaced", D, "b.txt");
    show("path_rename file over dir", rename_("b.txt", "dir1"));
    show("path_rename dir over file", rename_("dir1", "b.txt"));
    show("path_rename dir over non-empty dir", rename_("dir1", "full"));
    show("path_rename dir over empty dir", rename_("dir1", "dir2"));
    show("path_rename dir into itself", rename_("dir2", "dir2/inner"));
    show("path_rename missing", rename_("nope", "x"));
    show("path_rename file/ to x", rename_("b.txt/", "x"));
    show("path_rename file to x/", rename_("b.txt", "x/"));
    show("path_rename dir/ to dir3/", rename_("dir2/", "dir3/"));
    show("path_rename dir to dir4/", rename_("dir3", "dir4/"));
    show_path("stat dir4", D, 0, "dir4");
    show("path_rename to escape", rename_("b.txt", "../b.txt"));

    show("path_link", link_(0, "b.txt", "hard.txt"));
    fstat_t st;
    int e = pathstat(D, 0, "b.txt", &st);
    printf("nlink after path_link: %s %llu\n", en(e), (unsigned long long)st.nlink);
    show("path_link onto existing", link_(0, "b.txt", "hard.txt"));
    show("path_link a dir", link_(0, "dir4", "dirlink"));
    show("path_link missing", link_(0, "nope", "x"));
    show("path_link file/", link_(0, "b.txt/", "x"));
    show("path_link to x/", link_(0, "b.txt", "x/"));
    show("path_link to escape", link_(0, "b.txt", "../hard.txt"));

    show_path("path_filestat_get file", D, 0, "b.txt");
    show_path("path_filestat_get dir", D, 0, "dir4");
    show_path("path_filestat_get dir/", D, 0, "dir4/");
    show_path("path_filestat_get file/", D, 0, "b.txt/");
    show_path("path_filestat_get missing", D, 0, "nope");
    show_path("path_filestat_get .", D, 0, ".");
    show_path("path_filestat_get dir4/..", D, 0, "dir4/..");
    show_path("path_filestat_get ..", D, 0, "..");
    show_path("path_filestat_get /", D, 0, "/");
    show_path("path_filestat_get empty", D, 0, "");

    show("path_open missing", op(D, 0, "nope", 0, READ_RIGHTS, 0, &fd));
    show("path_open CREAT|EXCL existing", op(D, 0, "b.txt", __WASI_OFLAGS_CREAT | __WASI_OFLAGS_EXCL, FILE_RIGHTS, 0, &fd));
    show("path_open DIRECTORY on a file", op(D, 0, "b.txt", __WASI_OFLAGS_DIRECTORY, READ_RIGHTS, 0, &fd));
    show("path_open file/", op(D, 0, "b.txt/", 0, READ_RIGHTS, 0, &fd));
    show("path_open dir for writing", op(D, 0, "dir4", 0, FILE_RIGHTS, 0, &fd));
    show("path_open CREAT on new/", op(D, 0, "new/", __WASI_OFLAGS_CREAT, FILE_RIGHTS, 0, &fd));
    show("path_open CREAT on a dir", op(D, 0, "dir4", __WASI_OFLAGS_CREAT, FILE_RIGHTS, 0, &fd));
    show("path_open ../outside.txt", op(D, 0, "../outside.txt", 0, READ_RIGHTS, 0, &fd));
    show("path_open dir4/../../outside.txt", op(D, 0, "dir4/../../outside.txt", 0, READ_RIGHTS, 0, &fd));
    show("path_open absolute", op(D, 0, "/etc/passwd", 0, READ_RIGHTS, 0, &fd));
    show_content("path_open dir4/../data.txt", D, "dir4/../data.txt");
    show_content("path_open ./data.txt", D, "./data.txt");
    show("path_open TRUNC", op(D, 0, "b.txt", __WASI_OFLAGS_TRUNC, FILE_RIGHTS, 0, &fd));
    e = fdstat(fd, &st);
    printf("size after TRUNC: %s %llu\n", en(e), (unsigned long long)st.size);
    show("path_open under a file", op(fd, 0, "x", 0, READ_RIGHTS, 0, &fd));
    show("path_open under a closed fd", op(77, 0, "x", 0, READ_RIGHTS, 0, &fd));
    show("path_create_directory under a file", w_path_create_directory(fd, P("x"), 1));
    show("path_filestat_get under a file", pathstat(fd, 0, "x", &st));

    /* Invalid path bytes. */
    show("path_open NUL byte", w_path_open(D, 0, P("b.txt\0x"), 7, 0, READ_RIGHTS, 0, 0, P(&fd)));
    show("path_open invalid UTF-8", w_path_open(D, 0, P("b\xff.txt"), 6, 0, READ_RIGHTS, 0, 0, P(&fd)));
    show("path_create_directory invalid UTF-8", w_path_create_directory(D, P("\xc3("), 2));
    show("path_unlink_file NUL byte", w_path_unlink_file(D, P("b.txt\0"), 6));
}

/* --- symlinks ------------------------------------------------------------------- */

static void show_readlink(const char *what, const char *path, uint32_t len) {
    char buf[64];
    uint32_t n = 0;
    int e = w_path_readlink(D, P(path), strlen(path), P(buf), len, P(&n));
    if (e)
        printf("%s: %s\n", what, en(e));
    else
        printf("%s: ok \"%.*s\" n=%u\n", what, (int)n, buf, n);
}

static void sec_symlink(void) {
    int fd;
    mkfile("target.txt", "TARGET");
    mkdir_("dir");
    show("path_symlink", symlink_("target.txt", "link"));
    show("path_symlink dir", symlink_("dir", "dirlink"));
    show("path_symlink existing", symlink_("target.txt", "link"));
    show("path_symlink over a file", symlink_("x", "target.txt"));
    show("path_symlink dangling", symlink_("nowhere", "dangling"));
    show("path_symlink loop a", symlink_("loop_b", "loop_a"));
    show("path_symlink loop b", symlink_("loop_a", "loop_b"));
    show("path_symlink self", symlink_("self", "self"));
    show("path_symlink escaping target", symlink_("../outside.txt", "escape"));
    show("path_symlink absolute target", symlink_("/etc/passwd", "abs"));
    show("path_symlink new/", symlink_("target.txt", "new/"));
    show("path_symlink link/", symlink_("target.txt", "link/"));
    show("path_symlink in missing dir", symlink_("target.txt", "missing/l"));
    show("path_symlink empty target", symlink_("", "empty"));

    show_readlink("path_readlink", "link", 64);
    show_readlink("path_readlink short buffer", "link", 3);
    show_readlink("path_readlink zero buffer", "link", 0);
    show_readlink("path_readlink a file", "target.txt", 64);
    show_readlink("path_readlink missing", "nope", 64);
    show_readlink("path_readlink link/", "dirlink/", 64);
    show_readlink("path_readlink escaping", "escape", 64);

    show_content("path_open follow", D, "link");
    show("path_open nofollow", op(D, 0, "link", 0, READ_RIGHTS, 0, &fd));
    show("path_open nofollow DIRECTORY", op(D, 0, "link", __WASI_OFLAGS_DIRECTORY, READ_RIGHTS, 0, &fd));
    show("path_open dirlink follow DIRECTORY", op(D, 1, "dirlink", __WASI_OFLAGS_DIRECTORY, DIR_RIGHTS, 0, &fd));
    w_fd_close(fd);
    show("path_open dirlink nofollow DIRECTORY", op(D, 0, "dirlink", __WASI_OFLAGS_DIRECTORY, DIR_RIGHTS, 0, &fd));
    show("path_open dirlink/ nofollow", op(D, 0, "dirlink/", __WASI_OFLAGS_DIRECTORY, DIR_RIGHTS, 0, &fd));
    w_fd_close(fd);
    show("path_open through dirlink/x CREAT", op(D, 0, "dirlink/x", __WASI_OFLAGS_CREAT, FILE_RIGHTS, 0, &fd));
    w_fd_close(fd);
    show_path("dir/x exists", D, 0, "dir/x");
    show("path_open dangling follow", op(D, 1, "dangling", 0, READ_RIGHTS, 0, &fd));
    show("path_open dangling nofollow", op(D, 0, "dangling", 0, READ_RIGHTS, 0, &fd));
    show("path_open loop follow", op(D, 1, "loop_a", 0, READ_RIGHTS, 0, &fd));
    show("path_open self follow", op(D, 1, "self", 0, READ_RIGHTS, 0, &fd));
    show("path_open loop/x", op(D, 0, "loop_a/x", 0, READ_RIGHTS, 0, &fd));
    show("path_open escaping link follow", op(D, 1, "escape", 0, READ_RIGHTS, 0, &fd));
    show("path_open host up_link follow", op(D, 1, "up_link", 0, READ_RIGHTS, 0, &fd));
    show("path_open host abs_link follow", op(D, 1, "abs_link", 0, READ_RIGHTS, 0, &fd));
    show("path_open host abs_link nofollow", op(D, 0, "abs_link", 0, READ_RIGHTS, 0, &fd));

    show_path("path_filestat_get link nofollow", D, 0, "link");
    show_path("path_filestat_get link follow", D, 1, "link");
    show_path("path_filestat_get dirlink/ nofollow", D, 0, "dirlink/");
    show_path("path_filestat_get dangling nofollow", D, 0, "dangling");
    show_path("path_filestat_get dangling follow", D, 1, "dangling");
    show_path("path_filestat_get loop follow", D, 1, "loop_a");
    fstat_t lst; /* its size is the length of a host path: not printed */
    int le_ = pathstat(D, 0, "abs_link", &lst);
    printf("path_filestat_get abs_link nofollow: %s type=%s\n", en(le_), tn(lst.type));
    show_path("path_filestat_get abs_link follow", D, 1, "abs_link");
    show_path("path_filestat_get up_link follow", D, 1, "up_link");

    show("path_link nofollow", link_(0, "link", "hardlink"));
    show_path("hard link to the symlink", D, 0, "hardlink");
    show("path_link follow", link_(1, "link", "hardtarget"));
    show_path("hard link to the target", D, 0, "hardtarget");
    show("path_link follow escaping", link_(1, "escape", "stolen"));

    show("path_remove_directory dirlink", rmdir_("dirlink"));
    show("path_remove_directory dirlink/", rmdir_("dirlink/"));
    show("path_unlink_file dirlink/", unlink_("dirlink/"));
    show("path_unlink_file link/", unlink_("link/"));
    show("path_unlink_file link", unlink_("link"));
    show_content("target kept", D, "target.txt");
    show("path_unlink_file dangling", unlink_("dangling"));
    show("path_unlink_file dirlink", unlink_("dirlink"));
    show_path("dir kept", D, 0, "dir");
    show("path_rename symlink", rename_("escape", "escape2"));
    show_readlink("renamed symlink", "escape2", 64);
    show("path_rename loop_a/", rename_("loop_a/", "x"));
}

/* --- timestamps --------------------------------------------------------------------- */

#define T1 1234567890123456789ULL
#define T2 1111111111222222222ULL

static void show_times(const char *what, int e, const fstat_t *st) {
    if (e)
        printf("%s: %s\n", what, en(e));
    else
        printf("%s: atim=%llu mtim=%llu\n", what, (unsigned long long)st->atim, (unsigned long long)st->mtim);
}

static void sec_times(void) {
    int fd, dir;
    fstat_t st, before;
    int e;
    uint64_t now;
    mkfile("t.txt", "time");
    mkdir_("tdir");
    symlink_("t.txt", "tlink");
    show("path_open", op(D, 0, "t.txt", 0, FILE_RIGHTS, 0, &fd));
    show("fd_filestat_set_times ATIM|MTIM", w_fd_filestat_set_times(fd, T1, T2, __WASI_FSTFLAGS_ATIM | __WASI_FSTFLAGS_MTIM));
    show_times("fd_filestat_get", fdstat(fd, &st), &st);
    show("fd_filestat_set_times MTIM only", w_fd_filestat_set_times(fd, 0, T1, __WASI_FSTFLAGS_MTIM));
    show_times("atim kept", fdstat(fd, &st), &st);
    show("fd_filestat_set_times ATIM only", w_fd_filestat_set_times(fd, T2, 0, __WASI_FSTFLAGS_ATIM));
    show_times("mtim kept", fdstat(fd, &st), &st);
    show("fd_filestat_set_times nothing", w_fd_filestat_set_times(fd, 5, 5, 0));
    show_times("unchanged", fdstat(fd, &st), &st);
    show("ATIM|ATIM_NOW", w_fd_filestat_set_times(fd, 1, 1, __WASI_FSTFLAGS_ATIM | __WASI_FSTFLAGS_ATIM_NOW));
    show("MTIM|MTIM_NOW", w_fd_filestat_set_times(fd, 1, 1, __WASI_FSTFLAGS_MTIM | __WASI_FSTFLAGS_MTIM_NOW));
    show_times("unchanged after errors", fdstat(fd, &st), &st);
    w_clock_time_get(__WASI_CLOCKID_REALTIME, 1, P(&now));
    show("MTIM_NOW", w_fd_filestat_set_times(fd, 0, 0, __WASI_FSTFLAGS_MTIM_NOW));
    fdstat(fd, &st);
    printf("mtim is now: %s, atim kept: %s\n", yes(st.mtim + 1000000000ULL >= now && st.mtim < now + 60000000000ULL),
           yes(st.atim == T2));
    show("ATIM_NOW|MTIM", w_fd_filestat_set_times(fd, 0, T2, __WASI_FSTFLAGS_ATIM_NOW | __WASI_FSTFLAGS_MTIM));
    fdstat(fd, &st);
    printf("atim is now: %s, mtim set: %s\n", yes(st.atim + 1000000000ULL >= now), yes(st.mtim == T2));
    w_fd_close(fd);
    show("fd_filestat_set_times closed", w_fd_filestat_set_times(fd, 0, 0, __WASI_FSTFLAGS_MTIM_NOW));

    show("path_filestat_set_times", w_path_filestat_set_times(D, 0, P("t.txt"), 5, T2, T1, __WASI_FSTFLAGS_ATIM | __WASI_FSTFLAGS_MTIM));
    show_times("path_filestat_get", pathstat(D, 0, "t.txt", &st), &st);
    pathstat(D, 0, "tlink", &before);
    show("path_filestat_set_times symlink nofollow", w_path_filestat_set_times(D, 0, P("tlink"), 5, T1, T1, __WASI_FSTFLAGS_ATIM | __WASI_FSTFLAGS_MTIM));
    show_times("the link itself", pathstat(D, 0, "tlink", &st), &st);
    show_times("its target untouched", pathstat(D, 0, "t.txt", &st), &st);
    show("path_filestat_set_times symlink follow", w_path_filestat_set_times(D, 1, P("tlink"), 5, 42, 43, __WASI_FSTFLAGS_ATIM | __WASI_FSTFLAGS_MTIM));
    show_times("the target", pathstat(D, 0, "t.txt", &st), &st);
    e = pathstat(D, 0, "tlink", &st); /* following the link may have changed its atime */
    printf("the link's mtim untouched: %s %s\n", en(e), yes(st.mtim == T1));
    show("path_filestat_set_times dir", w_path_filestat_set_times(D, 0, P("tdir"), 4, T1, T2, __WASI_FSTFLAGS_ATIM | __WASI_FSTFLAGS_MTIM));
    show_times("dir", pathstat(D, 0, "tdir", &st), &st);
    show("path_filestat_set_times missing", w_path_filestat_set_times(D, 0, P("nope"), 4, 1, 1, __WASI_FSTFLAGS_MTIM));
    show("path_filestat_set_times bad flags", w_path_filestat_set_times(D, 0, P("t.txt"), 5, 1, 1, __WASI_FSTFLAGS_MTIM | __WASI_FSTFLAGS_MTIM_NOW));
    show("path_filestat_set_times escape", w_path_filestat_set_times(D, 0, P("../outside.txt"), 14, 1, 1, __WASI_FSTFLAGS_MTIM));
    show("path_open tdir", op(D, 0, "tdir", __WASI_OFLAGS_DIRECTORY, DIR_RIGHTS, 0, &dir));
    show("fd_filestat_set_times opened dir", w_fd_filestat_set_times(dir, T2, T1, __WASI_FSTFLAGS_ATIM | __WASI_FSTFLAGS_MTIM));
    show_times("opened dir", fdstat(dir, &st), &st);
    w_fd_close(dir);
}

/* --- fd_readdir ------------------------------------------------------------------------ */

typedef struct {
    char name[160];
    int type;
    uint64_t next;
} entry_t;

static int parse(const unsigned char *buf, uint32_t used, entry_t *out, int max, int *partial) {
    uint32_t off = 0;
    int count = 0;
    *partial = 0;
    while (off < used) {
        if (used - off < sizeof(__wasi_dirent_t)) {
            *partial = 1;
            break;
        }
        __wasi_dirent_t d;
        memcpy(&d, buf + off, sizeof d);
        if (used - off - sizeof d < d.d_namlen) {
            *partial = 1;
            break;
        }
        if (count < max) {
            int len = d.d_namlen < sizeof out[count].name - 1 ? d.d_namlen : sizeof out[count].name - 1;
            memcpy(out[count].name, buf + off + sizeof d, len);
            out[count].name[len] = 0;
            out[count].type = d.d_type;
            out[count].next = d.d_next;
        }
        count++;
        off += sizeof d + d.d_namlen;
    }
    return count;
}

static int cmp_entry(const void *a, const void *b) {
    return strcmp(((const entry_t *)a)->name, ((const entry_t *)b)->name);
}

static unsigned char big[128 * 1024];
static entry_t ents[512];

static void sec_readdir(void) {
    int dir, fd, partial;
    uint32_t used;
    mkdir_("rd");
    mkfile("rd/a", "");
    mkfile("rd/bb", "");
    mkfile("rd/ccc", "");
    mkdir_("rd/sub");
    symlink_("a", "rd/ln");
    show("path_open rd", op(D, 0, "rd", __WASI_OFLAGS_DIRECTORY, DIR_RIGHTS, 0, &dir));
    int e = w_fd_readdir(dir, P(big), sizeof big, 0, P(&used));
    int n = parse(big, used, ents, 512, &partial);
    printf("fd_readdir: %s entries=%d partial=%s\n", en(e), n, yes(partial));
    int cookies_ok = 1;
    for (int i = 0; i < n; i++) cookies_ok &= ents[i].next == (uint64_t)(i + 1);
    printf("d_next counts 1..n: %s\n", yes(cookies_ok));
    printf("first two: %s %s\n", ents[0].name, ents[1].name);
    qsort(ents, n, sizeof ents[0], cmp_entry);
    for (int i = 0; i < n; i++) printf("  %s %s\n", ents[i].name, tn(ents[i].type));

    /* Cookies: resume after the first two, at the end, and past it. */
    unsigned char again[4096];
    e = w_fd_readdir(dir, P(again), sizeof again, 2, P(&used));
    int m = parse(again, used, ents, 512, &partial);
    printf("from cookie 2: %s entries=%d same bytes as the full listing: %s\n", en(e), m,
           yes(used <= sizeof again && memcmp(again, big + 2 * sizeof(__wasi_dirent_t) + 3, used) == 0));
    e = w_fd_readdir(dir, P(again), sizeof again, n, P(&used));
    printf("from cookie n: %s used=%u\n", en(e), used);
    e = w_fd_readdir(dir, P(again), sizeof again, n + 5, P(&used));
    printf("from cookie n+5: %s used=%u\n", en(e), used);
    e = w_fd_readdir(dir, P(again), sizeof again, 0xFFFFFFFFFFFFull, P(&used));
    printf("from a huge cookie: %s used=%u\n", en(e), used);

    /* Short buffers are filled exactly, the last entry cut off. */
    uint32_t full_used;
    w_fd_readdir(dir, P(big), sizeof big, 0, P(&full_used));
    uint32_t sizes[] = {0, 1, 10, 24, 25, 30, 49, 50, 51};
    for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        memset(again, 0xEE, sizeof again);
        e = w_fd_readdir(dir, P(again), sizes[i], 0, P(&used));
        printf("buf_len %u: %s used=%u prefix matches=%s untouched after=%s\n", sizes[i], en(e), used,
               yes(memcmp(again, big, used) == 0), yes(again[sizes[i]] == 0xEE));
    }

    /* A listing read in small pieces, resuming at the last whole entry. */
    uint64_t cookie = 0;
    int total = 0, calls = 0;
    for (;;) {
        e = w_fd_readdir(dir, P(again), 60, cookie, P(&used));
        calls++;
        if (e || used == 0) break;
        int got = parse(again, used, ents, 512, &partial);
        if (got == 0) break;
        total += got;
        cookie = ents[got - 1].next;
        if (used < 60) break;
    }
    printf("piecewise: %s entries=%d\n", en(e), total);

    /* A change shows after rewinding to cookie 0. */
    mkfile("rd/new", "");
    e = w_fd_readdir(dir, P(big), sizeof big, 0, P(&used));
    printf("after adding a file: %s entries=%d\n", en(e), parse(big, used, ents, 512, &partial));
    w_fd_close(dir);

    /* A listing larger than one broker message. */
    mkdir_("many");
    char name[160];
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof name, "many/%03d_%0120d", i, 0);
        mkfile(name, "");
    }
    op(D, 0, "many", __WASI_OFLAGS_DIRECTORY, DIR_RIGHTS, 0, &dir);
    e = w_fd_readdir(dir, P(big), sizeof big, 0, P(&used));
    n = parse(big, used, ents, 512, &partial);
    qsort(ents, n, sizeof ents[0], cmp_entry);
    int names_ok = n == 302;
    for (int i = 2; i < n && names_ok; i++) {
        snprintf(name, sizeof name, "%03d_%0120d", i - 2, 0);
        names_ok = strcmp(ents[i].name, name) == 0;
    }
    printf("300 long names: %s entries=%d bytes=%u names=%s\n", en(e), n, used, yes(names_ok));
    w_fd_close(dir);

    e = w_fd_readdir(D, P(big), sizeof big, 0, P(&used));
    n = parse(big, used, ents, 512, &partial);
    int has_data = 0;
    for (int i = 0; i < n; i++) has_data |= strcmp(ents[i].name, "data.txt") == 0;
    printf("fd_readdir preopen: %s has data.txt=%s first=%s\n", en(e), yes(has_data), ents[0].name);
    op(D, 0, "data.txt", 0, READ_RIGHTS, 0, &fd);
    show("fd_readdir on a file", w_fd_readdir(fd, P(big), 100, 0, P(&used)));
    w_fd_close(fd);
    show("fd_readdir bad fd", w_fd_readdir(77, P(big), 100, 0, P(&used)));
}

/* --- fd_renumber, fd_close, preopens ------------------------------------------------------ */

static void sec_renumber(void) {
    int a, b, c, dir;
    uint32_t n;
    fstat_t st;
    mkfile("a.txt", "AAA");
    mkfile("b.txt", "BBB");
    op(D, 0, "a.txt", 0, FILE_RIGHTS, 0, &a);
    op(D, 0, "b.txt", 0, FILE_RIGHTS, 0, &b);
    show("fd_renumber a onto b", w_fd_renumber(a, b));
    show_read("read b", b, 10);
    show("fd_close a", w_fd_close(a));
    show("fd_renumber onto a closed fd", w_fd_renumber(b, 77));
    show_read("b still open", b, 10);
    show("fd_renumber from a closed fd", w_fd_renumber(77, b));
    show("fd_renumber closed onto stdout", w_fd_renumber(77, 1));
    show("fd_renumber onto itself", w_fd_renumber(b, b));
    show("fd_renumber stdout onto itself", w_fd_renumber(1, 1));
    fflush(stdout);
    show("stdout still works", wr(1, "stdout ok\n", &n));

    /* Over stderr: the guest's fd 2 becomes the file; the host's stderr is not closed. */
    op(D, 0, "err.txt", __WASI_OFLAGS_CREAT, FILE_RIGHTS, 0, &c);
    show("fd_renumber file onto stderr", w_fd_renumber(c, 2));
    show("write to fd 2", wr(2, "to the file", &n));
    show_content("err.txt", D, "err.txt");

    /* Preopens: renumbering one moves it, renumbering over one closes it. */
    op(D, 0, "sub", __WASI_OFLAGS_CREAT, FILE_RIGHTS, 0, &c);
    w_fd_close(c);
    mkdir_("d");
    op(D, 0, "d", __WASI_OFLAGS_DIRECTORY, DIR_RIGHTS, 0, &dir);
    op(D, 0, "a.txt", 0, READ_RIGHTS, 0, &a);
    show("fd_renumber preopen onto a file fd", w_fd_renumber(D, a));
    __wasi_prestat_t pre;
    show("fd_prestat_get old number", w_fd_prestat_get(D, P(&pre)));
    int e = w_fd_prestat_get(a, P(&pre));
    printf("fd_prestat_get new number: %s len=%u\n", en(e), (unsigned)pre.u.dir.pr_name_len);
    show_content("open through the moved preopen", a, "b.txt");
    show("fd_renumber a dir over the preopen", w_fd_renumber(dir, a));
    show("fd_prestat_get after", w_fd_prestat_get(a, P(&pre)));
    e = fdstat(a, &st);
    printf("fd_filestat_get: %s type=%s\n", en(e), tn(st.type));
    show("fd_close it", w_fd_close(a));
    show("fd_prestat_get closed", w_fd_prestat_get(a, P(&pre)));
    show("path_open under closed", op(a, 0, "b.txt", 0, READ_RIGHTS, 0, &b));
}

static void sec_close_preopen(void) {
    int fd;
    __wasi_prestat_t pre;
    show("fd_close preopen", w_fd_close(D));
    show("fd_prestat_get", w_fd_prestat_get(D, P(&pre)));
    show("path_open", op(D, 0, "data.txt", 0, READ_RIGHTS, 0, &fd));
    show("fd_readdir", w_fd_readdir(D, P(big), 100, 0, P(&fd)));
    show("fd_close again", w_fd_close(D));
}

/* --- args, environ, clocks, random, proc, sockets, prestat --------------------------------- */

static void sec_misc(void) {
    uint32_t argc, argv_size, envc, env_size;
    show("args_sizes_get", w_args_sizes_get(P(&argc), P(&argv_size)));
    printf("argc=%u size=%u\n", argc, argv_size);
    char **argv = calloc(argc + 1, sizeof *argv);
    char *argbuf = malloc(argv_size);
    show("args_get", w_args_get(P(argv), P(argbuf)));
    for (uint32_t i = 1; i < argc; i++) printf("argv[%u]=%s\n", i, argv[i]);
    printf("args packed: %s\n", yes(argc && argv[0] == argbuf && argv[argc - 1] + strlen(argv[argc - 1]) + 1 == argbuf + argv_size));
    show("environ_sizes_get", w_environ_sizes_get(P(&envc), P(&env_size)));
    printf("envc=%u size=%u\n", envc, env_size);
    char **env = calloc(envc + 1, sizeof *env);
    char *envbuf = malloc(env_size);
    show("environ_get", w_environ_get(P(env), P(envbuf)));
    for (uint32_t i = 0; i < envc; i++) printf("env[%u]=%s\n", i, env[i]);

    const char *clocks[] = {"REALTIME", "MONOTONIC", "PROCESS_CPUTIME_ID", "THREAD_CPUTIME_ID"};
    for (int id = 0; id < 4; id++) {
        uint64_t res = 0, t1 = 0, t2 = 0;
        int e = w_clock_res_get(id, P(&res));
        printf("clock_res_get %s: %s positive=%s at most 1ms=%s\n", clocks[id], en(e), yes(res > 0), yes(res <= 1000000));
        e = w_clock_time_get(id, 1, P(&t1));
        w_clock_time_get(id, 1, P(&t2));
        printf("clock_time_get %s: %s nondecreasing=%s\n", clocks[id], en(e), yes(t2 >= t1));
    }
    uint64_t t;
    w_clock_time_get(__WASI_CLOCKID_REALTIME, 0, P(&t));
    printf("realtime after 2020: %s\n", yes(t > 1577836800ULL * 1000000000ULL));

    unsigned char rnd[64] = {0};
    show("random_get", w_random_get(P(rnd), sizeof rnd));
    int nonzero = 0;
    for (unsigned i = 0; i < sizeof rnd; i++) nonzero += rnd[i] != 0;
    printf("random bytes mostly nonzero: %s\n", yes(nonzero > 32));
    show("random_get 0 bytes", w_random_get(P(rnd), 0));
    show("sched_yield", w_sched_yield());
    show("proc_raise SIGUSR1", w_proc_raise(SIGNAL_USR1));

    uint32_t n;
    uint16_t flags;
    __wasi_iovec_t iov = {rnd, 4};
#ifndef WASI_P0
    int fd;
    show("sock_accept stdin", w_sock_accept(0, 0, P(&fd)));
    show("sock_accept bad fd", w_sock_accept(77, 0, P(&fd)));
    show("sock_accept preopen", w_sock_accept(D, 0, P(&fd)));
#endif
    show("sock_recv stdin", w_sock_recv(0, P(&iov), 1, 0, P(&n), P(&flags)));
    show("sock_recv bad fd", w_sock_recv(77, P(&iov), 1, 0, P(&n), P(&flags)));
    show("sock_send stdout", w_sock_send(1, P(&iov), 1, 0, P(&n)));
    show("sock_send bad fd", w_sock_send(77, P(&iov), 1, 0, P(&n)));
    show("sock_shutdown stdout", w_sock_shutdown(1, __WASI_SDFLAGS_WR));
    show("sock_shutdown preopen", w_sock_shutdown(D, __WASI_SDFLAGS_RD));
    show("sock_shutdown bad fd", w_sock_shutdown(77, __WASI_SDFLAGS_RD));

    __wasi_prestat_t pre;
    char name[32];
    int e = w_fd_prestat_get(D, P(&pre));
    printf("fd_prestat_get: %s tag=%u len=%u\n", en(e), pre.tag, (unsigned)pre.u.dir.pr_name_len);
    memset(name, 0, sizeof name);
    e = w_fd_prestat_dir_name(D, P(name), pre.u.dir.pr_name_len);
    printf("fd_prestat_dir_name: %s \"%s\"\n", en(e), name);
    memset(name, 0, sizeof name);
    e = w_fd_prestat_dir_name(D, P(name), 3);
    printf("fd_prestat_dir_name short buffer: %s untouched=%s\n", en(e), yes(name[0] == 0));
    show("fd_prestat_dir_name zero buffer", w_fd_prestat_dir_name(D, P(name), 0));
    show("fd_prestat_get stdin", w_fd_prestat_get(0, P(&pre)));
    show("fd_prestat_get bad fd", w_fd_prestat_get(77, P(&pre)));
    show("fd_prestat_dir_name stdout", w_fd_prestat_dir_name(1, P(name), sizeof name));
    show("fd_prestat_dir_name bad fd", w_fd_prestat_dir_name(77, P(name), sizeof name));
    int sub;
    mkdir_("sub");
    op(D, 0, "sub", __WASI_OFLAGS_DIRECTORY, DIR_RIGHTS, 0, &sub);
    show("fd_prestat_get opened dir", w_fd_prestat_get(sub, P(&pre)));
    show("fd_prestat_dir_name opened dir", w_fd_prestat_dir_name(sub, P(name), sizeof name));
}

/* --- poll_oneoff ------------------------------------------------------------------------------- */

static unsigned char subs[8 * SUB_SIZE];
static unsigned char events[8 * EVENT_SIZE];

static void put(unsigned char *p, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void sub_clock(int i, uint64_t userdata, int clock, uint64_t timeout, int flags) {
    unsigned char *s = subs + i * SUB_SIZE;
    memset(s, 0, SUB_SIZE);
    put(s, userdata, 8);
    s[8] = __WASI_EVENTTYPE_CLOCK;
#ifdef WASI_P0
    put(s + 16, 0x5151515151515151ULL, 8); /* preview0's clock identifier: ignored */
#endif
    put(s + SUB_CLOCK_OFF, clock, 4);
    put(s + SUB_CLOCK_OFF + 8, timeout, 8);
    put(s + SUB_CLOCK_OFF + 16, 0, 8);
    put(s + SUB_CLOCK_OFF + 24, flags, 2);
}

static void sub_fd(int i, uint64_t userdata, int type, int fd) {
    unsigned char *s = subs + i * SUB_SIZE;
    memset(s, 0, SUB_SIZE);
    put(s, userdata, 8);
    s[8] = type;
    put(s + SUB_FD_OFF, fd, 4);
}

static const char *ETYPES[] = {"CLOCK", "FD_READ", "FD_WRITE"};

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t mono(void) {
    uint64_t t;
    w_clock_time_get(__WASI_CLOCKID_MONOTONIC, 1, P(&t));
    return t;
}

static void do_poll(const char *what, int nsubs) {
    uint32_t nev = 0;
    memset(events, 0xEE, sizeof events);
    int e = w_poll_oneoff(P(subs), P(events), nsubs, P(&nev));
    if (e) {
        printf("%s: %s\n", what, en(e));
        return;
    }
    /* Events in userdata order, so the output does not depend on their order. */
    uint64_t keys[8];
    for (uint32_t i = 0; i < nev && i < 8; i++) keys[i] = (le(events + i * EVENT_SIZE, 8) << 8) | i;
    qsort(keys, nev < 8 ? nev : 8, sizeof keys[0], cmp_u64);
    printf("%s: ok nevents=%u", what, nev);
    for (uint32_t k = 0; k < nev && k < 8; k++) {
        unsigned char *ev = events + (keys[k] & 0xFF) * EVENT_SIZE;
        int type = ev[10];
        printf(" [userdata=%llu error=%s type=%s", (unsigned long long)le(ev, 8), en((int)le(ev + 8, 2)),
               type < 3 ? ETYPES[type] : "?");
        if (type == __WASI_EVENTTYPE_FD_READ)
            printf(" hangup=%s", yes(le(ev + 24, 2) & __WASI_EVENTRWFLAGS_FD_READWRITE_HANGUP));
        printf("]");
    }
    printf("\n");
}

static void sec_poll(void) {
    uint64_t t0, now;
    int fd;
    show("poll_oneoff no subscriptions", w_poll_oneoff(P(subs), P(events), 0, P(&t0)));

    sub_clock(0, 11, __WASI_CLOCKID_MONOTONIC, 20000000, 0);
    t0 = mono();
    do_poll("relative 20ms", 1);
    printf("waited 20ms: %s\n", yes(mono() - t0 >= 20000000));

    sub_clock(0, 12, __WASI_CLOCKID_MONOTONIC, mono() + 20000000, __WASI_SUBCLOCKFLAGS_SUBSCRIPTION_CLOCK_ABSTIME);
    t0 = mono();
    do_poll("absolute monotonic +20ms", 1);
    printf("waited until then: %s\n", yes(mono() - t0 >= 15000000));

    sub_clock(0, 13, __WASI_CLOCKID_MONOTONIC, 1, __WASI_SUBCLOCKFLAGS_SUBSCRIPTION_CLOCK_ABSTIME);
    do_poll("absolute monotonic in the past", 1);

    w_clock_time_get(__WASI_CLOCKID_REALTIME, 1, P(&now));
    sub_clock(0, 14, __WASI_CLOCKID_REALTIME, now - 1000000000ULL, __WASI_SUBCLOCKFLAGS_SUBSCRIPTION_CLOCK_ABSTIME);
    do_poll("absolute realtime in the past", 1);

    sub_clock(0, 15, __WASI_CLOCKID_REALTIME, 10000000, 0);
    t0 = mono();
    do_poll("relative realtime 10ms", 1);
    printf("waited 10ms: %s\n", yes(mono() - t0 >= 10000000));

    sub_clock(0, 21, __WASI_CLOCKID_MONOTONIC, 2000000000, 0);
    sub_clock(1, 22, __WASI_CLOCKID_MONOTONIC, 10000000, 0);
    t0 = mono();
    do_poll("two clocks: only the earlier fires", 2);
    printf("did not wait for the later: %s\n", yes(mono() - t0 < 1000000000));

    sub_clock(0, 31, __WASI_CLOCKID_MONOTONIC, 0, 0);
    do_poll("zero timeout", 1);

    sub_clock(0, 32, __WASI_CLOCKID_PROCESS_CPUTIME_ID, 1000, 0);
    sub_clock(1, 33, __WASI_CLOCKID_MONOTONIC, 1000, 0);
    do_poll("cpu-time clock", 2);

    op(D, 0, "data.txt", 0, READ_RIGHTS, 0, &fd);
    sub_fd(0, 41, __WASI_EVENTTYPE_FD_READ, fd);
    sub_clock(1, 42, __WASI_CLOCKID_MONOTONIC, 5000000000ULL, 0);
    t0 = mono();
    do_poll("file readable at once", 2);
    printf("no wait: %s\n", yes(mono() - t0 < 1000000000));
    uint64_t pos;
    seek(fd, 0, WHENCE_END, &pos);
    sub_fd(0, 43, __WASI_EVENTTYPE_FD_READ, fd);
    do_poll("file at its end", 1);
    w_fd_close(fd);

    sub_fd(0, 51, __WASI_EVENTTYPE_FD_WRITE, 1);
    do_poll("stdout writable", 1);
    sub_fd(0, 52, __WASI_EVENTTYPE_FD_READ, 0);
    do_poll("stdin readable", 1); /* waits for the data, however late it comes */
    sub_fd(0, 53, __WASI_EVENTTYPE_FD_READ, 0);
    sub_fd(1, 54, __WASI_EVENTTYPE_FD_WRITE, 2);
    do_poll("stdin readable, stderr writable", 2);
    show_read("read stdin", 0, 100);

    sub_fd(0, 61, __WASI_EVENTTYPE_FD_READ, 77);
    do_poll("bad fd", 1);
    sub_fd(0, 62, __WASI_EVENTTYPE_FD_READ, D);
    do_poll("a directory", 1);
}

/* --- a read-only preopen (run with /sandbox read-only) -------------------------------------- */

static void sec_readonly(void) {
    int fd;
    uint32_t n;
    fstat_t st;
    show_rights("preopen", D);
    show("path_open for reading", op(D, 0, "data.txt", 0, READ_RIGHTS, 0, &fd));
    show_rights("file", fd);
    show_read("fd_read", fd, 4);
    show("fd_write", wr(fd, "x", &n));
    w_fd_close(fd);
    show("path_open for writing", op(D, 0, "data.txt", 0, FILE_RIGHTS, 0, &fd));
    show("path_open CREAT", op(D, 0, "new.txt", __WASI_OFLAGS_CREAT, READ_RIGHTS, 0, &fd));
    show("path_open TRUNC", op(D, 0, "data.txt", __WASI_OFLAGS_TRUNC, READ_RIGHTS, 0, &fd));
    show("path_create_directory", mkdir_("d"));
    show("path_unlink_file", unlink_("data.txt"));
    show("path_rename", rename_("data.txt", "moved.txt"));
    show("path_symlink", symlink_("data.txt", "l"));
    show("path_link", link_(0, "data.txt", "h"));
    show("path_filestat_set_times", w_path_filestat_set_times(D, 0, P("data.txt"), 8, 1, 1, __WASI_FSTFLAGS_MTIM));
    show("fd_filestat_set_times preopen", w_fd_filestat_set_times(D, 1, 1, __WASI_FSTFLAGS_MTIM));
    show_path("path_filestat_get", D, 0, "data.txt");
    show_readlink("path_readlink", "up_link", 64);
    uint32_t used;
    int e = w_fd_readdir(D, P(big), sizeof big, 0, P(&used));
    int partial, count = parse(big, used, ents, 512, &partial);
    printf("fd_readdir: %s entries=%d\n", en(e), count);
    e = fdstat(D, &st);
    printf("fd_filestat_get preopen: %s type=%s\n", en(e), tn(st.type));
    show_content("data.txt unchanged", D, "data.txt");
}

/* --- values outside their enum or flags type ------------------------------------------------
 * Run whole, or one check at a time (wasmtime-py traps on each of these). */

static void sec_invalid(int only) {
    int fd, check = 0;
    uint64_t pos, t;
    op(D, 0, "data.txt", 0, FILE_RIGHTS, 0, &fd);
#define CHECK(what, call) if (check++, only < 0 || only == check - 1) show(what, call)
    CHECK("fd_seek whence 7", seek(fd, 0, 7, &pos));
    CHECK("fd_advise 9", w_fd_advise(fd, 0, 8, 9));
    CHECK("path_open oflags 16", op(D, 0, "data.txt", 16, READ_RIGHTS, 0, &fd));
    CHECK("path_open fdflags 32", op(D, 0, "data.txt", 0, READ_RIGHTS, 32, &fd));
    CHECK("path_open lookupflags 2", op(D, 2, "data.txt", 0, READ_RIGHTS, 0, &fd));
    CHECK("path_filestat_get lookupflags 2", w_path_filestat_get(D, 2, P("data.txt"), 8, P(big)));
    CHECK("fd_filestat_set_times fstflags 16", w_fd_filestat_set_times(fd, 1, 1, 16));
    CHECK("fd_fdstat_set_flags 32", w_fd_fdstat_set_flags(fd, 32));
    CHECK("clock_res_get 4", w_clock_res_get(4, P(&t)));
    CHECK("clock_time_get 4", w_clock_time_get(4, 0, P(&t)));
    CHECK("sock_shutdown how 4", w_sock_shutdown(0, 4));
    sub_clock(0, 34, 9, 1000, 0);
    CHECK("poll_oneoff unknown clock", w_poll_oneoff(P(subs), P(events), 1, P(&t)));
    sub_fd(0, 63, 7, 1);
    CHECK("poll_oneoff unknown event type", w_poll_oneoff(P(subs), P(events), 1, P(&t)));
#undef CHECK
    if (only < 0) printf("checks: %d\n", check);
}

/* --- out-of-bounds guest pointers ------------------------------------------------------------ */

#define BAD 0xFFFFFFF0u

static void sec_fault(void) {
    uint32_t n;
    int fd;
    /* Each call names memory past the end of linear memory. */
    show("fd_write bad iovs", w_fd_write(1, BAD, 1, P(&n)));
    __wasi_ciovec_t iov = {(const uint8_t *)(uintptr_t)BAD, 100};
    show("fd_write bad buffer", w_fd_write(1, P(&iov), 1, P(&n)));
    show("fd_write bad nwritten", wr(1, "", (uint32_t *)(uintptr_t)BAD));
    show("fd_read bad buffer", w_fd_read(0, P(&iov), 1, P(&n)));
    show("fd_fdstat_get bad result", w_fd_fdstat_get(1, BAD));
    show("fd_filestat_get bad result", w_fd_filestat_get(D, BAD));
    show("clock_time_get bad result", w_clock_time_get(0, 0, BAD));
    show("clock_res_get bad result", w_clock_res_get(0, BAD));
    show("args_sizes_get bad result", w_args_sizes_get(BAD, BAD));
    show("args_get bad argv", w_args_get(BAD, BAD));
    show("environ_get bad environ", w_environ_get(BAD, BAD));
    show("random_get bad buffer", w_random_get(BAD, 64));
    show("random_get wrapping length", w_random_get(P(&n), 0xFFFFFFFF));
    show("path_open bad path", w_path_open(D, 0, BAD, 8, 0, READ_RIGHTS, 0, 0, P(&fd)));
    show("path_open bad result", w_path_open(D, 0, P("data.txt"), 8, 0, READ_RIGHTS, 0, 0, BAD));
    show("path_filestat_get bad result", w_path_filestat_get(D, 0, P("data.txt"), 8, BAD));
    show("path_create_directory bad path", w_path_create_directory(D, BAD, 100));
    show("path_readlink bad path", w_path_readlink(D, BAD, 4, P(&n), 4, P(&n)));
    show("fd_readdir bad buffer", w_fd_readdir(D, BAD, 100, 0, P(&n)));
    show("fd_prestat_get bad result", w_fd_prestat_get(D, BAD));
    show("fd_prestat_dir_name bad buffer", w_fd_prestat_dir_name(D, BAD, 100));
    show("poll_oneoff bad subscriptions", w_poll_oneoff(BAD, P(events), 1, P(&n)));
    show("poll_oneoff huge count", w_poll_oneoff(P(subs), P(events), 0x7FFFFFFF, P(&n)));
    op(D, 0, "data.txt", 0, READ_RIGHTS, 0, &fd);
    show("fd_seek bad result", w_fd_seek(fd, 0, WHENCE_SET, BAD));
    show("fd_tell bad result", w_fd_tell(fd, BAD));
    show("fd_pread bad iovs", w_fd_pread(fd, BAD, 2, 0, P(&n)));
    show("fd_pread bad buffer", w_fd_pread(fd, P(&iov), 1, 0, P(&n)));
    show("still alive", 0);
}

int main(int argc, char **argv) {
    __wasi_prestat_t pre;
    char name[16] = {0};
    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: %s <section> [check]\n", argv[0]);
        return 2;
    }
    if (w_fd_prestat_get(D, P(&pre)) || pre.u.dir.pr_name_len != 8 || w_fd_prestat_dir_name(D, P(name), 8)
        || strcmp(name, "/sandbox") != 0) {
        fprintf(stderr, "no /sandbox preopen at fd %d\n", D);
        return 2;
    }
    const char *s = argv[1];
    printf("== %s\n", s);
    if (!strcmp(s, "fd")) sec_fd();
    else if (!strcmp(s, "stdio")) sec_stdio();
    else if (!strcmp(s, "tty")) show_stdio_kinds();
    else if (!strcmp(s, "pipes")) sec_pipes();
    else if (!strcmp(s, "sockets")) sec_sockets();
    else if (!strcmp(s, "rights")) sec_rights();
    else if (!strcmp(s, "path")) sec_path();
    else if (!strcmp(s, "symlink")) sec_symlink();
    else if (!strcmp(s, "times")) sec_times();
    else if (!strcmp(s, "readdir")) sec_readdir();
    else if (!strcmp(s, "renumber")) sec_renumber();
    else if (!strcmp(s, "close_preopen")) sec_close_preopen();
    else if (!strcmp(s, "misc")) sec_misc();
    else if (!strcmp(s, "poll")) sec_poll();
    else if (!strcmp(s, "fault")) sec_fault();
    else if (!strcmp(s, "readonly")) sec_readonly();
    else if (!strcmp(s, "invalid")) sec_invalid(argc == 3 ? atoi(argv[2]) : -1);
    else if (!strcmp(s, "exit")) w_proc_exit(17);
    else {
        fprintf(stderr, "unknown section %s\n", s);
        return 2;
    }
    fflush(stdout);
    return 0;
}
