/* openpath: try to open one path; used by the escape tests.
 *
 * usage: openpath <path> r|w
 *   r: open(path, O_RDONLY) and copy the file's content to stdout.
 *   w: open(path, O_WRONLY|O_CREAT|O_TRUNC, 0644) and write "written\n" into it
 *      (nothing on stdout).
 * On failure it prints "open failed: <strerror(errno)>" to stdout and exits 1
 * ("read failed: ..." / "write failed: ..." for the later steps).
 * Bad usage exits 2. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 3 || (strcmp(argv[2], "r") != 0 && strcmp(argv[2], "w") != 0)) {
        fprintf(stderr, "usage: %s <path> r|w\n", argc > 0 ? argv[0] : "openpath");
        return 2;
    }
    int writing = argv[2][0] == 'w';
    int fd = writing ? open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644)
                     : open(argv[1], O_RDONLY);
    if (fd < 0) {
        printf("open failed: %s\n", strerror(errno));
        return 1;
    }

    if (writing) {
        const char *text = "written\n";
        size_t len = strlen(text);
        while (len > 0) {
            ssize_t m = write(fd, text, len);
            if (m < 0) {
                printf("write failed: %s\n", strerror(errno));
                return 1;
            }
            text += m;
            len -= (size_t)m;
        }
    } else {
        char buf[4096];
        ssize_t n;
        while ((n = read(fd, buf, sizeof buf)) > 0)
            fwrite(buf, 1, (size_t)n, stdout);
        if (n < 0) {
            printf("read failed: %s\n", strerror(errno));
            return 1;
        }
    }
    close(fd);
    return 0;
}
