/* seccomp.c: the job's seccomp profile at run time — a copy of the two classic BPF programs that
 * seccomp_gen.c compiled from seccomp_profile.c when drover was built. */
#include "sandbox/internal.h"

#include "sandbox/seccomp_bpf.h"

int sb_seccomp_build(struct sb_bpf *out, struct drv_error *err)
{
        _Static_assert(DRV_ARRAY_SIZE(sb_bpf_allow) <= BPF_MAXINSNS, "seccomp program too long");
        _Static_assert(DRV_ARRAY_SIZE(sb_bpf_deny) <= BPF_MAXINSNS, "seccomp program too long");
        out->insns = malloc(sizeof(sb_bpf_allow) + sizeof(sb_bpf_deny));
        if (!out->insns)
                return drv_err(err, ENOMEM, "out of memory");
        memcpy(out->insns, sb_bpf_allow, sizeof(sb_bpf_allow));
        out->len = (unsigned short)DRV_ARRAY_SIZE(sb_bpf_allow);
        out->deny_insns = out->insns + out->len;
        memcpy(out->deny_insns, sb_bpf_deny, sizeof(sb_bpf_deny));
        out->deny_len = (unsigned short)DRV_ARRAY_SIZE(sb_bpf_deny);
        return 0;
}
