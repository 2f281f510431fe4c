/* producer.h - the per-thread Kafka producer of the API (write path). */
#ifndef BP_PRODUCER_H
#define BP_PRODUCER_H

#include "server.h"

#endif
