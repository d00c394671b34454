/* logging.h - part of the ThreadSanitizer stand-in for Criterion (see criterion.h here): cr_log_* live there. */
#include "criterion.h"
