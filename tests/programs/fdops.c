/* fdops: a script of descriptor operations, for the differential test of
 * descriptor numbering against wasmtime-py.
 *
 *   fdops OP...   with the preopen at fd 3 and each OP one of
 *     o        path_open a new file ("f<i>", created) under fd 3: prints "o <fd>" or "o E<errno>"
 *     c<fd>    fd_close(fd): prints "c<fd> <errno>"
 *     r<a>:<b> fd_renumber(a, b): prints "r<a>:<b> <errno>"
 *
 * Results are kept in memory and written to fd 2 at the end with raw WASI
 * calls, so the script may close or move stdout (as real programs do with
 * fd_renumber(1, fd)); scripts leave fd 2 alone.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wasi/api.h>

static char out[65536];
static size_t used;

static void emit(const char *line) {
    size_t n = strlen(line);
    if (used + n < sizeof out) {
        memcpy(out + used, line, n);
        used += n;
    }
}

int main(int argc, char **argv) {
    char line[64];
    int files = 0;
    for (int i = 1; i < argc; i++) {
        const char *op = argv[i];
        if (op[0] == 'o') {
            char name[16];
            snprintf(name, sizeof name, "f%d", files++);
            __wasi_fd_t fd;
            __wasi_errno_t err = __wasi_path_open(
                3, 0, name, __WASI_OFLAGS_CREAT, __WASI_RIGHTS_FD_READ | __WASI_RIGHTS_FD_WRITE,
                0, 0, &fd);
            if (err)
                snprintf(line, sizeof line, "o E%d\n", err);
            else
                snprintf(line, sizeof line, "o %u\n", fd);
        } else if (op[0] == 'c') {
            unsigned fd = (unsigned)strtoul(op + 1, NULL, 10);
            snprintf(line, sizeof line, "c%u %d\n", fd, __wasi_fd_close(fd));
        } else if (op[0] == 'r') {
            char *colon;
            unsigned from = (unsigned)strtoul(op + 1, &colon, 10);
            unsigned to = (unsigned)strtoul(colon + 1, NULL, 10);
            snprintf(line, sizeof line, "r%u:%u %d\n", from, to, __wasi_fd_renumber(from, to));
        } else {
            snprintf(line, sizeof line, "? %s\n", op);
        }
        emit(line);
    }
    __wasi_ciovec_t iov = {(const uint8_t *)out, used};
    __wasi_size_t written;
    return __wasi_fd_write(2, &iov, 1, &written) ? 1 : 0;
}
