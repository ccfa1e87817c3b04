/* SPDX-License-Identifier: Apache-2.0 */
/*
 * xraptor-kafka-mock: a Kafka-protocol broker for the tests, made with
 * librdkafka's own mock cluster (rdkafka_mock.h). Prints its bootstrap
 * address(es) on the first line, then obeys stdin: "down [N]" and "up [N]"
 * take broker N (default 1) off and back on the network; with several
 * brokers, the partitions N led move to a broker still up, as a real
 * cluster's controller would elect new leaders; "coordinator GROUP N" makes
 * broker N the coordinator of consumer group GROUP (the mock never moves
 * one by itself); "id" prints the cluster's id, as a client learns it
 * (every epoch of history names it). EOF or "quit" ends it.
 *   xraptor-kafka-mock TOPIC PARTITIONS [BROKERS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define MAX_BROKERS 8
#define MAX_PARTITIONS 64

/* The cluster's id from its metadata, through a client of its own. */
static const char *cluster_id(const char *bootstraps)
{
    static char id[128];
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstraps, errstr, sizeof errstr);
    rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof errstr);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    snprintf(id, sizeof id, "unknown");
    if (rk) {
        char *got = rd_kafka_clusterid(rk, 5000);
        if (got) {
            snprintf(id, sizeof id, "%s", got);
            rd_kafka_mem_free(rk, got);
        }
        rd_kafka_destroy(rk);
    }
    return id;
}

int main(int argc, char **argv)
{
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: xraptor-kafka-mock TOPIC PARTITIONS [BROKERS]\n");
        return 2;
    }
    int parts = atoi(argv[2]), brokers = argc == 4 ? atoi(argv[3]) : 1;
    if (parts < 1 || parts > MAX_PARTITIONS || brokers < 1 || brokers > MAX_BROKERS) {
        fprintf(stderr, "xraptor-kafka-mock: 1-%d partitions, 1-%d brokers\n", MAX_PARTITIONS,
                MAX_BROKERS);
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
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, brokers);
    if (!mc || rd_kafka_mock_topic_create(mc, argv[1], parts, brokers)) {
        fprintf(stderr, "xraptor-kafka-mock: cannot create the mock cluster\n");
        return 1;
    }
    /* Leaders spread over the brokers (ids 1..N), known to us. */
    int leader[MAX_PARTITIONS], up[MAX_BROKERS + 1];
    for (int b = 1; b <= brokers; b++)
        up[b] = 1;
    for (int p = 0; p < parts; p++) {
        leader[p] = 1 + p % brokers;
        rd_kafka_mock_partition_set_leader(mc, argv[1], p, leader[p]);
    }
    printf("%s\n", rd_kafka_mock_cluster_bootstraps(mc));
    fflush(stdout);
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        int id = 1;
        char group[128];
        if (strncmp(line, "quit", 4) == 0)
            break;
        if (strncmp(line, "id", 2) == 0) {
            printf("%s\n", cluster_id(rd_kafka_mock_cluster_bootstraps(mc)));
            fflush(stdout);
            continue;
        }
        if (sscanf(line, "coordinator %127s %d", group, &id) == 2) {
            rd_kafka_mock_coordinator_set(mc, "group", group, id);
            printf("ok\n");
            fflush(stdout);
            continue;
        }
        int is_down = strncmp(line, "down", 4) == 0, is_up = strncmp(line, "up", 2) == 0;
        sscanf(line + (is_down ? 4 : 2), "%d", &id);
        if ((is_down || is_up) && id >= 1 && id <= brokers) {
            if (is_down) {
                rd_kafka_mock_broker_set_down(mc, id);
                up[id] = 0;
                /* New leaders for its partitions, on brokers still up. */
                for (int p = 0; p < parts; p++)
                    for (int b = 1; b <= brokers && leader[p] == id; b++)
                        if (up[b]) {
                            leader[p] = b;
                            rd_kafka_mock_partition_set_leader(mc, argv[1], p, b);
                        }
            } else {
                rd_kafka_mock_broker_set_up(mc, id);
                up[id] = 1;
            }
        }
        printf("ok\n");
        fflush(stdout);
    }
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return 0;
}
