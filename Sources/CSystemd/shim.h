#ifndef COMET_CSYSTEMD_SHIM_H
#define COMET_CSYSTEMD_SHIM_H
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>
#endif
