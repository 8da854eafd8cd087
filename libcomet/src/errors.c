#include "comet.h"

#include <string.h>

static const char *const comet_errors[] = {
        [1] = "no protocol version in common with cometd",
        [2] = "malformed frame",
        [3] = "frame too large",
        [4] = "unknown operation",
        [5] = "handshake required",
        [6] = "invalid channel name",
        [7] = "invalid argument",
        [8] = "a live channel already has this name",
        [9] = "no such channel",
        [10] = "the channel belongs to another connection",
        [11] = "the channel is closed",
        [12] = "no such subscription",
        [13] = "the channel was re-created (epoch mismatch)",
        [14] = "position ahead of the channel",
        [15] = "limit exceeded",
        [16] = "the channel is full",
        [17] = "not supported by this daemon",
        [18] = "cometd is shutting down",
        [19] = "no such session",
        [20] = "wrong session token",
        [21] = "the session belongs to another user",
        [22] = "the private channel is already read by a subscription",
        [23] = "the session ended",
        [24] = "no such pull was requested",
        [25] = "the upstream daemon is unreachable",
        [26] = "the address leads back to this daemon",
        [27] = "the upstream daemon speaks another protocol version",
        [28] = "invalid upstream address",
        [29] = "quota exceeded",
        [30] = "permission denied by the daemon's policy",
        [31] = "the channel was created by another user",
        [32] = "timed out",
        [33] = "a push behind a refused one was not applied (out of order)",
};

COMET_PUBLIC const char *comet_strerror(int error) {
        int e = error < 0 ? -error : error;
        if (e >= COMET_E_BASE) {
                int code = e - COMET_E_BASE;
                if (code == 255)
                        return "internal error in cometd";
                if (code > 0 && code < (int)(sizeof comet_errors / sizeof comet_errors[0]) && comet_errors[code])
                        return comet_errors[code];
                return "error reported by cometd";
        }
        if (e == 0)
                return "success";
        return strerror(e);
}

COMET_PUBLIC const char *comet_version(void) { return COMET_VERSION_STRING; }
