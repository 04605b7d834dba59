// Opens the directory argv[1] argv[2] times, keeping every handle open, and
// reads each listing to its end once; prints the entries seen (the
// supervisor-memory test: listings through many handles at once).
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: dirlist <dir> <handles>\n");
        return 2;
    }
    int handles = atoi(argv[2]);
    long seen = 0;
    for (int i = 0; i < handles; i++) {
        DIR *dir = opendir(argv[1]);
        if (!dir) {
            perror("opendir");
            return 1;
        }
        while (readdir(dir))
            seen++;
    }
    printf("entries %ld\n", seen);
    return 0;
}
