/* rawtar.h: hand-made ustar headers for the hostile-archive tests, byte by byte, where libarchive's
 * writer would refuse or fix what is wrong (an empty link name, an empty path, a pax record that
 * is not UTF-8). Headers only, no end-of-archive blocks: as a fuzzer's input would be. */
#pragma once

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct rawtar {
        const char *name;
        char type;        /* '0' file, '1' hard link, '2' symlink, '5' directory, 'x' pax */
        const char *link; /* the link name field (NULL: empty) */
        const char *data; /* content after the header (its size goes in the size field) */
};

/* A memfd (at offset 0) holding the n headers (and their data, padded to 512 bytes). */
static inline int rawtar_fd(const struct rawtar *es, size_t n)
{
        int fd = memfd_create("rawtar", MFD_CLOEXEC);
        for (size_t i = 0; i < n; i++) {
                unsigned char h[512] = {0};
                size_t dl = es[i].data ? strlen(es[i].data) : 0;
                strncpy((char *)h, es[i].name, 100);
                memcpy(h + 100, "0000644", 8);
                memcpy(h + 108, "0000000", 8);
                memcpy(h + 116, "0000000", 8);
                snprintf((char *)h + 124, 12, "%011o", (unsigned)dl);
                memcpy(h + 136, "14000000000", 12);
                h[156] = (unsigned char)es[i].type;
                if (es[i].link)
                        strncpy((char *)h + 157, es[i].link, 100);
                memcpy(h + 257,
                       "ustar\0"
                       "00",
                       8);
                memset(h + 148, ' ', 8);
                unsigned sum = 0;
                for (size_t k = 0; k < sizeof(h); k++)
                        sum += h[k];
                snprintf((char *)h + 148, 8, "%06o", sum);
                if (write(fd, h, sizeof(h)) != (ssize_t)sizeof(h))
                        return -1;
                if (dl) {
                        unsigned char pad[512] = {0};
                        if (write(fd, es[i].data, dl) != (ssize_t)dl ||
                            write(fd, pad, (512 - dl % 512) % 512) < 0)
                                return -1;
                }
        }
        lseek(fd, 0, SEEK_SET);
        return fd;
}
