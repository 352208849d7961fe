/* SPDX-License-Identifier: MIT
 * client_fiber_test.c - the same scenarios as client_test.c from a loom fiber (fiber mode: the
 * client's IO and reader fibers on the caller's core; blocking calls suspend the fiber). The
 * fake broker is a plain thread beside the runtime.
 * LOOM_TEST_TAGS: tsan timeout=60
 */
#include "client_scenarios.h"

static int fiber_main(void *arg)
{
    (void)arg;
    sc_all();
    return 0;
}

int main(void)
{
    int rc = test_run(1, fiber_main, NULL);
    if (rc == 0)
        printf("client_fiber_test: ok\n");
    return rc;
}
