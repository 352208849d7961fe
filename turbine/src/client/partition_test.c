/* SPDX-License-Identifier: MIT
 * partition_test.c - murmur2 against the values of Kafka's own tests (UtilsTest.testMurmur2,
 * and the Kafka-derived vectors of Akka's Murmur2Spec), and the key -> partition mapping of
 * Kafka's default partitioner.
 */
#include <errno.h>

#include "harness.h"
#include "turbine/client.h"

struct vector {
    const char *key;
    int32_t hash;
};

static const struct vector vectors[] = {
    /* org.apache.kafka.common.utils.UtilsTest#testMurmur2 */
    {"21", -973932308},
    {"foobar", -790332482},
    {"a-little-bit-long-string", -985981536},
    {"a-little-bit-longer-string", -1486304829},
    {"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
    {"abc", 479470107},
    /* every tail length (1..5 bytes), from Kafka's Utils.murmur2 */
    {"1", -1993445489},
    {"12", 126087238},
    {"123", -267702483},
    {"1234", -1614185708},
    {"12345", -1188365604},
};

int main(void)
{
    for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        const struct vector *v = &vectors[i];
        CHECK_EQ(turbine_murmur2(v->key, strlen(v->key)), v->hash);
        /* Kafka: Utils.toPositive(murmur2(key)) % numPartitions */
        for (int32_t n = 1; n <= 64; n++) {
            int32_t expected = (int32_t)(((uint32_t)v->hash & 0x7fffffffu) % (uint32_t)n);
            CHECK_EQ(turbine_partition_for_key(v->key, strlen(v->key), n), expected);
        }
    }
    /* "21" hashes negative: the sign bit is masked, not the value negated (toPositive). */
    CHECK_EQ(turbine_partition_for_key("21", 2, 3), (int32_t)((2147483648u - 973932308u) % 3));
    CHECK_EQ(turbine_murmur2("", 0), 275646681); /* empty key: hashed, unlike a null key */
    CHECK_EQ(turbine_partition_for_key("k", 1, 0), -EINVAL);

    /* error texts */
    CHECK_STREQ(turbine_client_strerror(0), "success");
    CHECK_CONTAINS(turbine_client_strerror(TURBINE_CLIENT_ERR(TURBINE_ERR_UNKNOWN_TOPIC)),
                   "UNKNOWN_TOPIC");
    CHECK_CONTAINS(turbine_client_strerror(-ECONNREFUSED), "refused");
    CHECK_CONTAINS(turbine_client_strerror(TURBINE_CLIENT_ERR(999)), "UNKNOWN");
    CHECK_EQ(turbine_client_broker_error(TURBINE_CLIENT_ERR(TURBINE_ERR_TIMEOUT)),
             TURBINE_ERR_TIMEOUT);
    CHECK_EQ(turbine_client_broker_error(-ETIMEDOUT), TURBINE_ERR_NONE);
    CHECK(turbine_client_retriable(TURBINE_CLIENT_ERR(TURBINE_ERR_NOT_LEADER)));
    CHECK(!turbine_client_retriable(TURBINE_CLIENT_ERR(TURBINE_ERR_MALFORMED)));
    CHECK(turbine_client_retriable(-ECONNRESET));
    CHECK(!turbine_client_retriable(-EINVAL));
    CHECK(!turbine_client_retriable(0));
    printf("partition_test: ok\n");
    return 0;
}
