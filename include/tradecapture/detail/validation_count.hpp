#pragma once
// Internal (not installed): a test hook of validate once (issue #12).

#include <cstdint>

namespace tradecapture::detail {

/// How many times `validate` ran on the calling thread (a plain thread-local count, one
/// instruction per call). Lets tests check that an ingress validates each event once.
std::uint64_t validations_on_this_thread() noexcept;

}  // namespace tradecapture::detail
