/* producer.c - per-thread Kafka producer whose delivery reports are driven from the event loop.
 * (Filled in by the write path.) */
#include "producer.h"

const bp_api_module_t bp_producer_module = {"producer", NULL, NULL};
