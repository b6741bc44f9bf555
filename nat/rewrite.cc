// The rewrites are inline (nat/rewrite.h); this unit compiles the header on its own so that
// it stays self-contained.
#include "nat/rewrite.h"
