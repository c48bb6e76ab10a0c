#pragma once
/// \file request_body.hpp
/// Splits the body of `POST /v1/trades` (spec section 5) into events: one JSON event object, a
/// JSON array of them, or NDJSON (one event per line, as in a replay file).

#include <tradecapture/event_codec.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tradecapture {

/// The media type of a request body.
enum class BodyFormat {
  json,    ///< application/json: one event object, or an array of them
  ndjson,  ///< application/x-ndjson: one event per line, blank lines skipped
};

/// One event of a request body with its place in the request.
struct BodyEvent {
  /// The 1-based index in the array (1 for a single object), or the physical line number in an
  /// NDJSON body.
  std::uint64_t line = 0;
  ParsedEvent parsed;  ///< exactly what `parse_event` makes of the event's own text
};

/// A request body split into events.
struct ParsedBody {
  std::vector<BodyEvent> events;  ///< in request order
  /// Non-empty (and `events` empty) when an application/json body is not JSON at all: the
  /// request is answered 400 with this reason ("invalid: not valid JSON: ... at byte N", N
  /// 1-based in the body as sent). Never set for NDJSON, whose lines stand alone.
  std::string error;
};

/// Splits `body`. Each array element or NDJSON line is handed to `parse_event` as its own text,
/// so an element is accepted or rejected exactly as the same text on a replay line would be;
/// an element that is not an object is one REJECTED event. A leading UTF-8 byte-order mark is
/// skipped.
///
/// application/json: the whole body must be RFC 8259 JSON in valid UTF-8, else `error` is set
/// (an empty body, truncated or trailing text, invalid UTF-8, an escaped lone surrogate, a raw
/// NUL). Numbers of any magnitude, repeated keys and unknown fields are JSON: they reach
/// `parse_event`, which rejects the one element. A top-level array gives one event per element
/// (none for `[]`); any other top-level value (an object, or a scalar, which is REJECTED) gives
/// one event with line 1.
///
/// Never throws on bad input (only `std::bad_alloc`); needs no recursion for deep nesting and
/// runs in time linear in the body size.
ParsedBody parse_request_body(std::string_view body, BodyFormat format);

}  // namespace tradecapture
