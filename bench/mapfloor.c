/*
 * mapfloor.c - the floor of any program that serves a model file: map the
 * file read-only (MAP_PRIVATE | MAP_POPULATE, as br_model_open does), touch
 * every page, unmap, exit. Compare a whole bookrec-infer run against it:
 *
 *   hyperfine -N --warmup 20 './build/bookrec-infer -m M --user 1 --top 5' './build/mapfloor M'
 *
 * Prints nothing on success; the reads go through a volatile pointer so
 * they are never optimised away.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: mapfloor FILE\n");
        return 2;
    }
    int fd = open(argv[1], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_size == 0) {
        fprintf(stderr, "mapfloor: cannot open %s\n", argv[1]);
        return 1;
    }
    size_t len = (size_t)st.st_size;
    int flags = MAP_PRIVATE;
#ifdef MAP_POPULATE
    flags |= MAP_POPULATE;
#endif
    const volatile uint8_t *p = mmap(NULL, len, PROT_READ, flags, fd, 0);
    close(fd);
    if ((const void *)p == MAP_FAILED) {
        fprintf(stderr, "mapfloor: cannot map %s\n", argv[1]);
        return 1;
    }
    uint8_t sum = 0;
    long page = sysconf(_SC_PAGESIZE);
    for (size_t i = 0; i < len; i += (size_t)page)
        sum ^= p[i];
    munmap((void *)p, len);
    (void)sum;
    return 0;
}
