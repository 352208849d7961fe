/* SPDX-License-Identifier: MIT
 * client_test.c - the client from plain threads (thread mode: its own IO thread, responses
 * read through loom's IO pool) against the fake broker: admin, produce and consume, batching,
 * acks 0, pipelining, retries with order kept, reconnect, time-outs, refused connections.
 * LOOM_TEST_TAGS: tsan timeout=60
 */
#include "client_scenarios.h"

int main(void)
{
    sc_all();
    printf("client_test: ok\n");
    return 0;
}
