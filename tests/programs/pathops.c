/* pathops: run a list of path operations through wasi-libc, one line each.
 *
 * usage: pathops OP ARGS... [OP ARGS...]...
 *   link SRC DST           link(SRC, DST)                       (path_link, no follow)
 *   linkf SRC DST          linkat(.., AT_SYMLINK_FOLLOW)        (path_link, SYMLINK_FOLLOW)
 *   linkat DIR NAME DST    DIR opened as a directory, linkat(dirfd, NAME, .., DST, 0)
 *   rename SRC DST         rename(SRC, DST)
 *   renameat DIR NAME DST  DIR opened as a directory, renameat(dirfd, NAME, .., DST)
 *   renameto SRC DIR NAME  DIR opened as a directory, renameat(.., SRC, dirfd, NAME)
 *   symlink TARGET LINK    symlink(TARGET, LINK)
 *   symlinkat DIR TARGET NAME  DIR opened as a directory, symlinkat(TARGET, dirfd, NAME)
 *   readlink PATH          prints the target
 *   write PATH TEXT        open(PATH, O_WRONLY|O_TRUNC) and write TEXT
 *   read PATH              prints the content
 *   stat PATH / lstat PATH / fstat PATH
 *                          size, nlink and the three times as SECONDS.NANOSECONDS (fstat: of an fd
 *                          opened O_RDONLY, so the child answers, not the broker)
 *   ls DIR                 the names in DIR, sorted, and whether every d_ino matched stat's
 *
 * Each operation prints "OP ARGS: ok [values]" or "OP ARGS: ERR <strerror>";
 * the program goes on and exits 0. Bad usage exits 2.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int err(void) {
    printf("ERR %s\n", strerror(errno));
    return 0;
}

static void show_stat(const struct stat *st) {
    printf("ok size=%llu nlink=%llu atim=%lld.%09ld mtim=%lld.%09ld ctim=%lld.%09ld\n",
           (unsigned long long)st->st_size, (unsigned long long)st->st_nlink,
           (long long)st->st_atim.tv_sec, st->st_atim.tv_nsec, (long long)st->st_mtim.tv_sec,
           st->st_mtim.tv_nsec, (long long)st->st_ctim.tv_sec, st->st_ctim.tv_nsec);
}

static int open_dir(const char *dir) {
    return open(dir, O_RDONLY | O_DIRECTORY);
}

static int cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void list(const char *dir) {
    char *names[256];
    size_t count = 0;
    int inodes_match = 1;
    DIR *d = opendir(dir);
    if (!d) {
        err();
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL && count < 256) {
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && strcmp(e->d_name, "..")
            && st.st_ino != e->d_ino)
            inodes_match = 0;
        names[count++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, count, sizeof names[0], cmp);
    printf("ok");
    for (size_t i = 0; i < count; i++) {
        printf(" %s", names[i]);
        free(names[i]);
    }
    printf(" inodes=%s\n", inodes_match ? "match" : "differ");
}

static void with_dir(const char *dir, int (*op)(int, char **), char **args) {
    int fd = open_dir(dir);
    if (fd < 0) {
        err();
        return;
    }
    if (op(fd, args) != 0)
        err();
    else
        printf("ok\n");
    close(fd);
}

static int do_linkat(int fd, char **a) { return linkat(fd, a[0], AT_FDCWD, a[1], 0); }
static int do_renameat(int fd, char **a) { return renameat(fd, a[0], AT_FDCWD, a[1]); }
static int do_renameto(int fd, char **a) { return renameat(AT_FDCWD, a[0], fd, a[1]); }
static int do_symlinkat(int fd, char **a) { return symlinkat(a[0], fd, a[1]); }

static int arity(const char *op) {
    static const struct { const char *name; int args; } ops[] = {
        {"link", 2}, {"linkf", 2}, {"linkat", 3}, {"rename", 2}, {"renameat", 3},
        {"renameto", 3}, {"symlink", 2}, {"symlinkat", 3}, {"readlink", 1}, {"write", 2},
        {"read", 1}, {"stat", 1}, {"lstat", 1}, {"fstat", 1}, {"ls", 1},
    };
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (!strcmp(op, ops[i].name))
            return ops[i].args;
    return -1;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc;) {
        const char *op = argv[i];
        int n = arity(op);
        if (n < 0 || i + 1 + n > argc) {
            fprintf(stderr, "usage: pathops OP ARGS... (bad or incomplete operation %s)\n", op);
            return 2;
        }
        char **a = argv + i + 1;
        printf("%s", op);
        for (int j = 0; j < n; j++)
            printf(" %s", a[j]);
        printf(": ");
        struct stat st;
        char buf[4096];
        ssize_t len;
        int fd;
        if (!strcmp(op, "link")) {
            link(a[0], a[1]) ? err() : printf("ok\n");
        } else if (!strcmp(op, "linkf")) {
            linkat(AT_FDCWD, a[0], AT_FDCWD, a[1], AT_SYMLINK_FOLLOW) ? err() : printf("ok\n");
        } else if (!strcmp(op, "linkat")) {
            with_dir(a[0], do_linkat, a + 1);
        } else if (!strcmp(op, "rename")) {
            rename(a[0], a[1]) ? err() : printf("ok\n");
        } else if (!strcmp(op, "renameat")) {
            with_dir(a[0], do_renameat, a + 1);
        } else if (!strcmp(op, "renameto")) {
            char *args[2] = {a[0], a[2]};
            with_dir(a[1], do_renameto, args);
        } else if (!strcmp(op, "symlink")) {
            symlink(a[0], a[1]) ? err() : printf("ok\n");
        } else if (!strcmp(op, "symlinkat")) {
            with_dir(a[0], do_symlinkat, a + 1);
        } else if (!strcmp(op, "readlink")) {
            len = readlink(a[0], buf, sizeof buf);
            len < 0 ? err() : printf("ok %.*s\n", (int)len, buf);
        } else if (!strcmp(op, "write")) {
            fd = open(a[0], O_WRONLY | O_TRUNC);
            if (fd < 0 || write(fd, a[1], strlen(a[1])) != (ssize_t)strlen(a[1]))
                err();
            else
                printf("ok\n");
            if (fd >= 0)
                close(fd);
        } else if (!strcmp(op, "read")) {
            fd = open(a[0], O_RDONLY);
            len = fd < 0 ? -1 : read(fd, buf, sizeof buf);
            len < 0 ? err() : printf("ok %.*s\n", (int)len, buf);
            if (fd >= 0)
                close(fd);
        } else if (!strcmp(op, "stat")) {
            stat(a[0], &st) ? err() : (show_stat(&st), 0);
        } else if (!strcmp(op, "lstat")) {
            lstat(a[0], &st) ? err() : (show_stat(&st), 0);
        } else if (!strcmp(op, "fstat")) {
            fd = open(a[0], O_RDONLY);
            if (fd < 0 || fstat(fd, &st) != 0)
                err();
            else
                show_stat(&st);
            if (fd >= 0)
                close(fd);
        } else if (!strcmp(op, "ls")) {
            list(a[0]);
        }
        i += 1 + n;
    }
    return 0;
}
