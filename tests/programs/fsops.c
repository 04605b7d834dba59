/* fsops: exercise the path and directory calls inside one preopen.
 *
 * usage: fsops <dir>      (dir: a preopened directory name, e.g. "." or "/sandbox")
 *
 * On success stdout is exactly:
 *   size=6
 *   entry=.
 *   entry=..
 *   entry=b.txt
 *   content=alpha
 *   ok
 * On failure it prints "ERR <step>: <strerror>" to stdout and exits 1.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void fail(const char *step) {
    printf("ERR %s: %s\n", step, strerror(errno));
    exit(1);
}

static int cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv) {
    char sub[1024], a[1024], b[1024];
    char *names[64];
    size_t count = 0;

    if (argc != 2) {
        fprintf(stderr, "usage: %s <dir>\n", argv[0]);
        return 2;
    }
    snprintf(sub, sizeof sub, "%s/sub", argv[1]);
    snprintf(a, sizeof a, "%s/sub/a.txt", argv[1]);
    snprintf(b, sizeof b, "%s/sub/b.txt", argv[1]);

    if (mkdir(sub, 0755) != 0) fail("mkdir");

    int fd = open(a, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) fail("create");
    if (write(fd, "alpha\n", 6) != 6) fail("write");
    if (close(fd) != 0) fail("close");

    struct stat st;
    if (stat(a, &st) != 0) fail("stat");
    printf("size=%lld\n", (long long)st.st_size);

    if (rename(a, b) != 0) fail("rename");

    DIR *d = opendir(sub);
    if (!d) fail("opendir");
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        if (count == sizeof names / sizeof names[0]) {
            errno = EOVERFLOW;
            fail("readdir");
        }
        names[count] = strdup(e->d_name);
        if (!names[count]) fail("strdup");
        count++;
        errno = 0;
    }
    if (errno != 0) fail("readdir");
    if (closedir(d) != 0) fail("closedir");
    qsort(names, count, sizeof names[0], cmp);
    for (size_t i = 0; i < count; i++) {
        printf("entry=%s\n", names[i]);
        free(names[i]);
    }

    fd = open(b, O_RDONLY);
    if (fd < 0) fail("open");
    char buf[256];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n < 0) fail("read");
    buf[n] = '\0';
    if (close(fd) != 0) fail("close");
    printf("content=%s", buf);

    if (unlink(b) != 0) fail("unlink");
    if (rmdir(sub) != 0) fail("rmdir");
    printf("ok\n");
    return 0;
}
