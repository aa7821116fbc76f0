/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The syscall a task is in, read from its saved user registers
 * (bpf_task_pt_regs): number and arguments, per architecture. Socket
 * tracepoints carry the struct sock but not the user buffer: the buffer (or
 * iovec, or msghdr) is the syscall's second argument.
 */
#ifndef OBS_SYSREGS_H
#define OBS_SYSREGS_H

/* r is the trusted pointer bpf_task_pt_regs() returns: direct loads. */
#if defined(__TARGET_ARCH_x86)
#define SYSCALL_NR(r)	((r)->orig_ax)
#define SYSCALL_ARG1(r)	((r)->di)
#define SYSCALL_ARG2(r)	((r)->si)
#define SYSCALL_ARG3(r)	((r)->dx)
enum {
	NR_read = 0, NR_write = 1, NR_readv = 19, NR_writev = 20, NR_sendfile = 40,
	NR_sendto = 44, NR_recvfrom = 45, NR_sendmsg = 46, NR_recvmsg = 47,
};
#elif defined(__TARGET_ARCH_arm64)
#define SYSCALL_NR(r)	((r)->syscallno)
#define SYSCALL_ARG1(r)	((r)->orig_x0)
#define SYSCALL_ARG2(r)	((r)->regs[1])
#define SYSCALL_ARG3(r)	((r)->regs[2])
enum {
	NR_read = 63, NR_write = 64, NR_readv = 65, NR_writev = 66, NR_sendfile = 71,
	NR_sendto = 206, NR_recvfrom = 207, NR_sendmsg = 211, NR_recvmsg = 212,
};
#else
#error "obs: syscall numbers for this architecture are missing (bpf/sysregs.h)"
#endif

#endif
