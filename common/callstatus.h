/* The status of a call, shared by the broker's store (broker/store.h) and
 * the client (client/client.h), so that both name it the same way and the
 * library defines it once. The lifecycle is in DESIGN §3 and docs/protocol.md
 * ("The call JSON"). The numbers are stored by the broker: never renumber. */
#ifndef P2PRPC_CALLSTATUS_H
#define P2PRPC_CALLSTATUS_H

#include "error.h"

#include <stdbool.h>

typedef enum p2p_call_status {
    P2P_CALL_PUSHED = 0,     /* created by a client, not yet available to workers */
    P2P_CALL_QUEUED = 1,     /* waiting for a worker */
    P2P_CALL_RUNNING = 2,    /* claimed by a worker that holds a lease */
    P2P_CALL_DONE = 3,       /* finished with outputs */
    P2P_CALL_FAILED = 4,     /* finished with an error message */
    P2P_CALL_TERMINATED = 5, /* stopped on request */
} p2p_call_status;

#define P2P_CALL_STATUS_COUNT 6

/* Returns the status's stable lowercase name ("queued"), or "unknown" for a
 * value outside the enum. Never NULL. */
const char *p2p_call_status_name(p2p_call_status status);

/* Parses a name given by p2p_call_status_name() into `*out`. Returns 0, or
 * P2P_EINVAL for anything else, leaving `*out` untouched. */
int p2p_call_status_parse(const char *name, p2p_call_status *out) P2P_NODISCARD;

/* True for done, failed and terminated: states no operation leaves except restart. */
bool p2p_call_status_finished(p2p_call_status status);

#endif
