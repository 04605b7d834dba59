/* env: print the arguments and the environment, one fact per line:
 *   argc=N
 *   argv[0]=...
 *   ...
 *   env:NAME=VALUE      (every environ entry, in order)
 */
#include <stdio.h>

extern char **environ;

int main(int argc, char **argv) {
    printf("argc=%d\n", argc);
    for (int i = 0; i < argc; i++)
        printf("argv[%d]=%s\n", i, argv[i]);
    for (char **e = environ; e && *e; e++)
        printf("env:%s\n", *e);
    return 0;
}
