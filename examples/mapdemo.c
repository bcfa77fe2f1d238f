/* SPDX-License-Identifier: MIT */
/* mapdemo — map a bigfile, change it, commit, and read it back.
 *
 *   mapdemo FILE          create FILE on a bigfilefs mount (or reuse it),
 *                         make it 4 blocks long, fill blocks 0 and 2 through
 *                         a shared mapping, commit with BIGFILE_IOC_WRITEOUT,
 *                         change block 1 and drop that with
 *                         BIGFILE_IOC_DISCARD, then read everything back;
 *   mapdemo --check FILE  only read back and check what the first form
 *                         committed (e.g. after a remount).
 *
 * Prints each step; exits 0 when every check holds, 1 otherwise.
 * Build: cc $(pkg-config --cflags bigfile) mapdemo.c -o mapdemo
 * See ioctl_bigfile(2) and bigfilefs(8). */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bigfile/ioctl.h>

#define NBLOCKS 4

/* The committed content of block b: blocks 0 and 2 are filled with a
 * letter, 1 and 3 were never written and read as zeros. */
static unsigned char expected_byte(unsigned b)
{
    return (b == 0 || b == 2) ? (unsigned char)('a' + b) : 0;
}

static int fail(const char *what)
{
    fprintf(stderr, "mapdemo: FAIL: %s%s%s\n", what, errno ? ": " : "",
            errno ? strerror(errno) : "");
    return 1;
}

/* Print the daemon's view of the file (BIGFILE_IOC_STAT); 0 or 1. */
static int show_stat(int fd, const char *when, struct bigfile_stat *st)
{
    memset(st, 0, sizeof(*st));
    if (ioctl(fd, BIGFILE_IOC_STAT, st) == -1)
        return fail("BIGFILE_IOC_STAT");
    printf("  stat %s: size %llu, committed_size %llu, dirty_blocks %llu, writeouts %llu\n", when,
           (unsigned long long)st->size, (unsigned long long)st->committed_size,
           (unsigned long long)st->dirty_blocks, (unsigned long long)st->writeouts);
    return 0;
}

/* Check that each block of the file reads as expected_byte(b) with pread
 * and through a fresh read-only mapping; 0 or 1. */
static int check_contents(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd == -1)
        return fail("open for reading");
    struct stat sb;
    if (fstat(fd, &sb) == -1)
        return fail("fstat");
    size_t bs = (size_t)sb.st_blksize;
    if ((uint64_t)sb.st_size != (uint64_t)NBLOCKS * bs) {
        errno = 0;
        fprintf(stderr, "mapdemo: size is %jd, expected %zu\n", (intmax_t)sb.st_size, NBLOCKS * bs);
        return fail("size");
    }
    unsigned char *buf = malloc(bs);
    unsigned char *map = mmap(NULL, NBLOCKS * bs, PROT_READ, MAP_SHARED, fd, 0);
    if (!buf || map == MAP_FAILED)
        return fail("malloc/mmap");
    int bad = 0;
    for (unsigned b = 0; b < NBLOCKS && !bad; b++) {
        if (pread(fd, buf, bs, (off_t)(b * bs)) != (ssize_t)bs)
            return fail("pread");
        for (size_t i = 0; i < bs; i++) {
            if (buf[i] != expected_byte(b) || map[b * bs + i] != expected_byte(b)) {
                fprintf(stderr, "mapdemo: block %u byte %zu: read %d, mapped %d, expected %d\n", b,
                        i, buf[i], map[b * bs + i], expected_byte(b));
                bad = 1;
                break;
            }
        }
    }
    munmap(map, NBLOCKS * bs);
    free(buf);
    close(fd);
    if (bad) {
        errno = 0;
        return fail("contents");
    }
    printf("read back %d blocks of %zu bytes with read(2) and mmap(2): as committed\n", NBLOCKS,
           bs);
    return 0;
}

static int demo(const char *path)
{
    struct bigfile_stat st;

    int fd = open(path, O_RDWR | O_CREAT, 0644);
    if (fd == -1)
        return fail("open");
    struct stat sb;
    if (fstat(fd, &sb) == -1)
        return fail("fstat");
    size_t bs = (size_t)sb.st_blksize;
    size_t len = NBLOCKS * bs;
    printf("opened %s: block size %zu, size %jd\n", path, bs, (intmax_t)sb.st_size);

    /* A size change is an uncommitted change like any other. */
    if (ftruncate(fd, (off_t)len) == -1)
        return fail("ftruncate");
    printf("ftruncate to %zu bytes (%d blocks): uncommitted\n", len, NBLOCKS);

    unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return fail("mmap");
    for (unsigned b = 0; b < NBLOCKS; b++)
        if (expected_byte(b))
            memset(p + b * bs, expected_byte(b), bs);
    printf("filled blocks 0 and 2 through the mapping (no msync)\n");
    if (show_stat(fd, "before writeout", &st))
        return 1;

    /* Commit: the daemon makes the kernel write the dirty pages back, then
     * stores both blocks and the size in one transaction. */
    struct bigfile_writeout wo = {
        .flags = BIGFILE_WRITEOUT_STORE | BIGFILE_WRITEOUT_MARKSTORED,
    };
    if (ioctl(fd, BIGFILE_IOC_WRITEOUT, &wo) == -1)
        return fail("BIGFILE_IOC_WRITEOUT");
    printf("writeout: %llu blocks, %llu bytes stored\n", (unsigned long long)wo.blocks,
           (unsigned long long)wo.bytes);
    errno = 0;
    if (wo.blocks != 2 || wo.bytes != 2 * bs)
        return fail("writeout should have stored exactly blocks 0 and 2");
    if (show_stat(fd, "after writeout", &st))
        return 1;
    errno = 0;
    if (st.dirty_blocks != 0 || st.committed_size != len || st.size != len)
        return fail("after writeout: dirty blocks left or sizes not committed");

    /* Change block 1, then throw the change away: the mapping shows the
     * committed content (zeros) again. */
    memset(p + bs, 'X', bs);
    printf("block 1 changed to 'X' through the mapping\n");
    struct bigfile_count dc = { 0 };
    if (ioctl(fd, BIGFILE_IOC_DISCARD, &dc) == -1)
        return fail("BIGFILE_IOC_DISCARD");
    printf("discard: %llu blocks dropped; block 1 now reads %d, block 0 reads '%c'\n",
           (unsigned long long)dc.blocks, p[bs], p[0]);
    errno = 0;
    if (p[bs] != 0 || p[2 * bs - 1] != 0 || p[0] != 'a')
        return fail("the mapping does not show the committed content after discard");

    munmap(p, len);
    close(fd);
    return check_contents(path);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--check") == 0)
        return check_contents(argv[2]);
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: mapdemo FILE | mapdemo --check FILE\n");
        return 2;
    }
    return demo(argv[1]);
}
