#ifndef COMET_CSYSTEMD_SHIM_H
#define COMET_CSYSTEMD_SHIM_H
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <fcntl.h>

/* pipe2(2) by system call: glibc declares it only under _GNU_SOURCE. */
static inline int comet_pipe_cloexec(int fds[2]) {
    return (int)syscall(SYS_pipe2, fds, O_CLOEXEC);
}
#endif
