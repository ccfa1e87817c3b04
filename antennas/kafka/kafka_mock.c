/* SPDX-License-Identifier: Apache-2.0 */
/*
 * xraptor-kafka-mock: a Kafka-protocol broker for the tests, made with
 * librdkafka's own mock cluster (rdkafka_mock.h). Prints its bootstrap
 * address on the first line, then obeys stdin: "down" and "up" take the
 * broker off and back on the network; EOF or "quit" ends it.
 *   xraptor-kafka-mock TOPIC PARTITIONS
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: xraptor-kafka-mock TOPIC PARTITIONS\n");
        return 2;
    }
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    /* This client only hosts the cluster; it connects nowhere. */
    rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof errstr);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk) {
        fprintf(stderr, "xraptor-kafka-mock: %s\n", errstr);
        return 1;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, 1);
    if (!mc || rd_kafka_mock_topic_create(mc, argv[1], atoi(argv[2]), 1)) {
        fprintf(stderr, "xraptor-kafka-mock: cannot create the mock cluster\n");
        return 1;
    }
    printf("%s\n", rd_kafka_mock_cluster_bootstraps(mc));
    fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        if (strncmp(line, "down", 4) == 0)
            rd_kafka_mock_broker_set_down(mc, 1);
        else if (strncmp(line, "up", 2) == 0)
            rd_kafka_mock_broker_set_up(mc, 1);
        else if (strncmp(line, "quit", 4) == 0)
            break;
        printf("ok\n");
        fflush(stdout);
    }
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return 0;
}
