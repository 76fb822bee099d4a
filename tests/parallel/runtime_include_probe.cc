// SPDX-License-Identifier: Apache-2.0
// Compiled as a parallel/ target by tests/parallel/CMakeLists.txt to show that such a target
// cannot include a runtime/ header: building it must fail on the second include.
#include "parallel/sharding.h"
#include "runtime/core/status.h"
