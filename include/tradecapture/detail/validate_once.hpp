#pragma once
// Internal (not installed): validate once (issue #12) for the library's own ingresses.
//
// `Pipeline::async_submit` and `async_submit_batch` validate every event (spec section 1) before
// admission, whatever the caller did: a host's events are never trusted. The gateway and the
// Kafka source need `validate`'s verdict before they submit (they answer an invalid event
// themselves, without the pipeline: the gateway counts it in `rejected_at_parse` and leaves it
// out of the request's whole-batch reservation; the Kafka source counts it `invalid`, checks the
// message key only after it, and consumes it with an offsets-only commit), so they run
// `parse_event` (= `decode_event` + `validate`) and submit only what passed. They submit through
// `PrevalidatedSubmit`, which skips the pipeline's second `validate`; the outcome is the same,
// since the event they submit is the one `validate` accepted, moved, never modified.
//
// Not a flag of the public API: only code that includes this header (the core and the backends
// built with it) can reach the private entry points of `Pipeline`.

#include <tradecapture/detail/validation_count.hpp>  // the test hook
#include <tradecapture/pipeline.hpp>

#include <utility>
#include <vector>

namespace tradecapture::detail {

/// Submission of events the caller has validated itself (`validate` returned empty for each).
struct PrevalidatedSubmit {
  /// `Pipeline::async_submit(event, options, token)` without the pipeline's `validate`.
  template <class CompletionToken>
  static auto async_submit(Pipeline& pipeline, TradeEvent event, SubmitOptions options,
                           CompletionToken&& token) {
    return pipeline.initiate_submit_(std::move(event), std::move(options),
                                     std::forward<CompletionToken>(token), true);
  }
  /// `Pipeline::async_submit_batch(events, reservation, options, token)` without the
  /// pipeline's `validate`.
  template <class CompletionToken>
  static auto async_submit_batch(Pipeline& pipeline, std::vector<TradeEvent> events,
                                 Pipeline::Reservation reservation, SubmitOptions options,
                                 CompletionToken&& token) {
    return pipeline.initiate_batch_(std::move(events), std::move(reservation), std::move(options),
                                    std::forward<CompletionToken>(token), true);
  }
};

}  // namespace tradecapture::detail
