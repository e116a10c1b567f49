/* Shared between http_client.c and http_client_util.c only; not installed. */
#ifndef P2PRPC_HTTP_CLIENT_INTERNAL_H
#define P2PRPC_HTTP_CLIENT_INTERNAL_H

#include <stdbool.h>

/* Runs curl_global_init once per process, whoever asks first. Returns true
 * when libcurl is usable. Thread-safe. */
bool p2p__http_client_global_init(void);

#endif
