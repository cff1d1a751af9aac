/* runtime_docker_helper.c: drover-docker-helper in the job's primary container — copied in once
 * (an archive PUT of the bytes drover carries), its `oom-kills` mode (the container cgroup's own
 * OOM-kill counter, which no engine event log can lose), and the decoder of its `connect` frames.
 */
#include "executor/docker/runtime_docker_int.h"

#include <sys/mman.h>

/* docker_helper_bin.c, generated at build time by helper_embed */
extern const unsigned char rtdocker_helper_bin[];
extern const size_t rtdocker_helper_len;

/* The machine drover (and so the helper) is built for, in the engine's (Go's) names. */
static const char *built_arch(void)
{
#if defined(__x86_64__)
        return "amd64";
#elif defined(__aarch64__)
        return "arm64";
#elif defined(__i386__)
        return "386";
#elif defined(__arm__)
        return "arm";
#elif defined(__s390x__)
        return "s390x";
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        return "ppc64le";
#elif defined(__riscv) && __riscv_xlen == 64
        return "riscv64";
#else
        return "unknown";
#endif
}

int rtdocker_helper_install(struct rtdocker *rt, struct docker *d, struct drv_error *err)
{
        pthread_mutex_lock(&rt->helper_lock);
        int r = 0;
        const char *ea = docker_engine_arch(d);
        if (rt->helper_ready) {
                /* done */
        } else if (*ea && strcmp(ea, built_arch()) != 0) {
                r = drv_err(err, ENOEXEC,
                            "docker %s: the engine runs on %s, drover's in-container helper is "
                            "built for %s",
                            docker_host_name(d), ea, built_arch());
        } else {
                /* root-owned, in a directory of its own: the job user cannot swap it */
                const struct rtdocker_tar_entry en[] = {
                    {DKHELPER_DIR + 1, NULL, 0, 0755, 0, 0},
                    {DKHELPER_PATH + 1, rtdocker_helper_bin, rtdocker_helper_len, 0755, 0, 0},
                };
                uint64_t t0 = drv_now_ns();
                r = rtdocker_put_entries(d, rt->primary, "/", en, DRV_ARRAY_SIZE(en), err);
                if (r < 0)
                        drv_err_prefix(err, "copying %s into the job's container", DKHELPER_PATH);
                else
                        log_debug("docker_helper_installed", "container=%.12s bytes=%zu ms=%llu",
                                  rt->primary, rtdocker_helper_len,
                                  (unsigned long long)((drv_now_ns() - t0) / 1000000));
                rt->helper_ready = r == 0;
        }
        pthread_mutex_unlock(&rt->helper_lock);
        return r;
}

int rtdocker_parse_oom_kill(const char *text, uint64_t *kills)
{
        for (const char *l = text; l && *l;) {
                size_t len = strcspn(l, "\n");
                if (len > 9 && strncmp(l, "oom_kill ", 9) == 0) {
                        char num[24];
                        if (len - 9 >= sizeof(num))
                                return -EINVAL;
                        memcpy(num, l + 9, len - 9);
                        num[len - 9] = '\0';
                        return drv_parse_u64(num, kills) < 0 ? -EINVAL : 0;
                }
                l += len + (l[len] == '\n');
        }
        return -ENOENT;
}

int rtdocker_oom_kills(struct rtdocker *rt, uint64_t *kills, struct drv_error *err)
{
        int r = rtdocker_helper_install(rt, rt->d, err);
        if (r < 0)
                return r;
        _cleanup_close_ int fd = memfd_create("oom-kills", MFD_CLOEXEC);
        if (fd < 0)
                return drv_err_errno(err, "memfd_create");
        char *argv[] = {(char *)DKHELPER_PATH, (char *)"oom-kills", NULL};
        int code = -1;
        if ((r = docker_exec_run(rt->d, rt->primary, argv, NULL, fd, &code, err)) < 0)
                return r;
        _cleanup_free_ char *text = NULL;
        lseek(fd, 0, SEEK_SET);
        if ((r = drv_read_fd(fd, &text, NULL, 65536, err)) < 0)
                return r;
        if (code != 0)
                return drv_err(err, EIO, "%s oom-kills: exit %d: %.200s", DKHELPER_PATH, code,
                               text ? text : "");
        r = text ? rtdocker_parse_oom_kill(text, kills) : -ENOENT;
        return r < 0 ? drv_err(err, -r, "%s oom-kills: no oom_kill counter in \"%.200s\"",
                               DKHELPER_PATH, text ? text : "")
                     : 0;
}

static bool frame_type_ok(int t)
{
        return t == DKH_CONNECTED || t == DKH_ERROR || t == DKH_DATA || t == DKH_EOF;
}

int rtdocker_frames_feed(struct rtdocker_frames *fr, const void *data, size_t n,
                         int (*out)(void *ud, int type, const void *p, size_t len, bool end),
                         void *ud)
{
        const unsigned char *p = data;
        while (n > 0) {
                if (fr->hdr_len < DKH_HDR) {
                        size_t k = DKH_HDR - fr->hdr_len < n ? DKH_HDR - fr->hdr_len : n;
                        memcpy(fr->hdr + fr->hdr_len, p, k);
                        fr->hdr_len += k;
                        p += k;
                        n -= k;
                        if (fr->hdr_len < DKH_HDR)
                                break;
                        fr->type = fr->hdr[0];
                        fr->left = (size_t)fr->hdr[1] << 24 | (size_t)fr->hdr[2] << 16 |
                                   (size_t)fr->hdr[3] << 8 | fr->hdr[4];
                        if (!frame_type_ok(fr->type) || fr->left > DKH_MAX_PAYLOAD)
                                return -EPROTO;
                        if (fr->left == 0) {
                                fr->hdr_len = 0;
                                int r = out(ud, fr->type, NULL, 0, true);
                                if (r < 0)
                                        return r;
                        }
                        continue;
                }
                size_t k = fr->left < n ? fr->left : n;
                fr->left -= k;
                int r = out(ud, fr->type, p, k, fr->left == 0);
                if (r < 0)
                        return r;
                p += k;
                n -= k;
                if (fr->left == 0)
                        fr->hdr_len = 0;
        }
        return 0;
}
