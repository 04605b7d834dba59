/* WASI conformance checks against wasi_unstable (preview0 layouts): see wasi_conf.h. */
#define WASI_P0
#include "wasi_conf.h"
