// SubmitOp's constructor: the one place its opaque bookkeeping (op_state.hpp) is created.

#include "op_state.hpp"

#include <chrono>
#include <utility>

namespace tradecapture::detail {

SubmitOp::SubmitOp(TradeEvent&& e) : event(std::move(e)), submitted(std::chrono::steady_clock::now()) {
  ::new (static_cast<void*>(scheduler_state)) OpState{};
}

}  // namespace tradecapture::detail
