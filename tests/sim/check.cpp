// The checker: judges a finished run against spec section 6 with an independent model.
//
// Its inputs are what the clients saw (submissions with their windows and outcomes), the log of
// commits the fault-injecting store applied, and the final contents of the memory store. The
// business rules come from make_position_processor(); idempotency, sequence numbers and which
// store instants an outcome may be read at are modelled here, never taken from the pipeline.
//
// Instants. The store's history is a sequence of commits; after k of them the store is in state
// S_k. A submission received when h0 commits had applied and reported when h1 had may be decided
// at any S_k with h0 <= k <= h1, or inside commit k (h0 <= k < h1) after a prefix of its own
// partition's events (a batch decides its events in order on the state its commit validates).
// With a deadline, k is also bounded by the commits applied when the host clock passed the
// deadline, or by a commit of that host sent before then (a commit under way still decides).
// An ACCEPTED outcome is decided by the commit that stored the event, so that commit must lie in
// the window: a host may not report as its own a write that another host made after its deadline.

#include "sim.hpp"

#include <algorithm>
#include <set>
#include <unordered_map>

namespace sim {
namespace {

bool same_event(const TradeEvent& a, const TradeEvent& b) {
  return a.trade_id == b.trade_id && a.version == b.version && a.same_content(b);
}

bool is_conflict(const Outcome& o) {
  return o.kind == OutcomeKind::Rejected && o.reason.rfind("conflict:", 0) == 0;
}

bool same_outcome(const Outcome& a, const Outcome& b) {
  if (a.kind != b.kind) return false;
  if (a.kind == OutcomeKind::Accepted) return a.seq == b.seq;
  return a.reason == b.reason || (is_conflict(a) && is_conflict(b));
}

std::string show(const Outcome& o) {
  std::string s(to_string(o.kind));
  if (o.kind == OutcomeKind::Accepted) s += " seq " + std::to_string(o.seq);
  if (!o.reason.empty()) s += " (" + o.reason + ")";
  return s;
}

std::string show(const TradeEvent& e) {
  return std::string(to_string(e.type)) + " " + e.trade_id + " v" + std::to_string(e.version);
}

/// Where an event sits in the store's history.
struct Placed {
  std::size_t commit;  ///< index in the history log
  int partition;
  std::size_t j;       ///< position among its partition's events in that commit
  const StoredEvent* stored;
};

/// Section 3 for one event on a partition state whose idempotency key is absent.
Outcome decide(const Processor& proc, const PartitionState& st, const TradeEvent& e) {
  Outcome o = proc.decide(e, st).outcome;
  if (o.kind == OutcomeKind::Accepted) o.seq = st.seq + 1;
  return o;
}

PartitionState apply(const Processor& proc, const PartitionState& st, const TradeEvent& e) {
  Decision d = proc.decide(e, st);
  PartitionState next = st;
  next.position = d.position;
  next.trades[e.trade_id] = d.record;
  ++next.seq;
  return next;
}

}  // namespace

std::string check_run(const CheckInput& in) {
  const int np = static_cast<int>(in.partitions.size());
  std::map<PartitionKey, int> index;
  for (int p = 0; p < np; ++p) index[in.partitions[p]] = p;

  // (3) From the commit log: gap-free sequences per partition, every key stored once.
  std::vector<std::vector<Placed>> stored(np);
  std::unordered_map<IdempotencyKey, Placed, IdempotencyKeyHash> keys;
  for (std::size_t c = 0; c < in.history.size(); ++c) {
    std::vector<std::size_t> j(np, 0);
    for (const StoredEvent& se : in.history[c].events) {
      auto it = index.find(se.event.partition);
      if (it == index.end()) return "(3) a commit wrote a partition no client uses";
      const int p = it->second;
      if (se.seq != stored[p].size() + 1)
        return "(3) partition " + std::to_string(p) + ": commit #" + std::to_string(c) +
               " appended seq " + std::to_string(se.seq) + " after seq " +
               std::to_string(stored[p].size());
      Placed at{c, p, j[p]++, &se};
      stored[p].push_back(at);
      if (!keys.emplace(IdempotencyKey{se.event.trade_id, se.event.version}, at).second)
        return "(3) " + show(se.event) + " stored twice";
    }
  }

  // The store agrees with the log.
  std::vector<std::vector<StoredEvent>> scanned(np);
  if (!in.store.scan_events([&](const StoredEvent& se) {
        auto it = index.find(se.event.partition);
        if (it != index.end()) scanned[it->second].push_back(se);
        return true;
      }))
    return "scan_events failed on the memory store";
  for (int p = 0; p < np; ++p) {
    if (scanned[p].size() != stored[p].size())
      return "(3) partition " + std::to_string(p) + ": the store holds " +
             std::to_string(scanned[p].size()) + " events, the commit log " +
             std::to_string(stored[p].size());
    for (std::size_t i = 0; i < scanned[p].size(); ++i)
      if (scanned[p][i].seq != i + 1 || !same_event(scanned[p][i].event, stored[p][i].stored->event))
        return "(3) partition " + std::to_string(p) + ": stored seq " + std::to_string(i + 1) +
               " differs from the commit log";
  }

  // (4) Every stored event is acceptable where it stands, and the stored state is its fold.
  std::vector<std::vector<PartitionState>> states(np);
  for (int p = 0; p < np; ++p) {
    states[p].emplace_back();
    for (const Placed& at : stored[p]) {
      const TradeEvent& e = at.stored->event;
      Outcome o = decide(in.processor, states[p].back(), e);
      if (o.kind != OutcomeKind::Accepted)
        return "(4) partition " + std::to_string(p) + ": stored " + show(e) + " at seq " +
               std::to_string(at.stored->seq) + ", but the model decides " + show(o) + " there";
      states[p].push_back(apply(in.processor, states[p].back(), e));
    }
  }
  auto rows = in.store.positions();
  auto loaded = in.store.load_partitions(in.partitions);
  if (!rows || !loaded) return "positions/load_partitions failed on the memory store";
  std::size_t with_events = 0;
  for (int p = 0; p < np; ++p) with_events += stored[p].empty() ? 0 : 1;
  if (rows.value().size() != with_events) return "(4) positions lists the wrong partitions";
  for (const PositionRow& row : rows.value()) {
    const PartitionState& want = states[index.at(row.partition)].back();
    if (row.seq != want.seq || !(row.position == want.position))
      return "(4) partition " + row.partition.to_string() +
             ": the stored position is not the fold of its stored events";
  }
  for (int p = 0; p < np; ++p) {
    const PartitionState& got = loaded.value()[p];
    const PartitionState& want = states[p].back();
    if (got.seq != want.seq || !(got.position == want.position) || got.trades != want.trades)
      return "(4) partition " + std::to_string(p) + ": the stored trades are not the fold of its stored events";
  }

  // (1) Every outcome is the section-3 outcome at one instant between submission and report.
  auto length_at = [&](int p, std::size_t k) {  // partition length in S_k
    const auto& v = stored[p];
    return static_cast<std::size_t>(
        std::lower_bound(v.begin(), v.end(), k, [](const Placed& a, std::size_t c) { return a.commit < c; }) -
        v.begin());
  };
  // Whether `o` is the outcome of `e` at an instant of the window [h0, hmax]; else what is.
  auto judge = [&](const Submission& s, const TradeEvent& e, const Outcome& o, std::size_t hmax,
                   std::string& valid) {
    const int p = s.partition;
    if (o.kind == OutcomeKind::Accepted) {  // its own write lies in the window
      const std::size_t seq = o.seq;
      if (seq == 0 || seq > stored[p].size() || !same_event(stored[p][seq - 1].stored->event, e)) {
        valid = "another event (or none) is stored at that seq";
        return false;
      }
      const std::size_t c = stored[p][seq - 1].commit;
      valid = "the commit that stored it (#" + std::to_string(c) + ") lies outside the window";
      return c >= s.h0 && c < hmax;
    }
    auto k = keys.find(IdempotencyKey{e.trade_id, e.version});
    const Placed* held = k == keys.end() ? nullptr : &k->second;
    // The key present at some instant of the window: DUPLICATE or conflict.
    if (held && held->commit < hmax) {
      Outcome m = held->stored->event.same_content(e) ? Outcome::duplicate()
                                                      : Outcome::rejected("conflict: stored");
      if (same_outcome(m, o)) return true;
      valid += show(m) + "; ";
    }
    // The key absent: the processor on each partition length the window passes through, at the
    // earliest instant with that length (where the key is least likely present).
    const std::size_t lo = length_at(p, s.h0), hi = length_at(p, hmax);
    for (std::size_t len = lo; len <= hi; ++len) {
      bool absent = !held;
      if (held && len == lo) absent = held->commit >= s.h0;
      if (held && len > lo) {
        const Placed& last = stored[p][len - 1];  // the event that made the length `len`
        absent = held->commit > last.commit ||
                 (held->commit == last.commit && (held->partition != p || held->j > last.j));
      }
      if (!absent) continue;
      Outcome m = decide(in.processor, states[p][len], e);
      if (m.kind == OutcomeKind::Accepted) continue;
      if (same_outcome(m, o)) return true;
      valid += show(m) + " at length " + std::to_string(len) + "; ";
    }
    if (valid.empty()) valid = "ACCEPTED";
    valid = "the model allows only " + valid + " (window: commits " + std::to_string(s.h0) + ".." +
            std::to_string(hmax) + ", partition length " + std::to_string(lo) + ".." +
            std::to_string(hi) + ")";
    return false;
  };
  for (const Submission& s : in.subs) {
    if (s.state != Submission::State::decided) continue;
    const TradeEvent& e = in.streams[s.partition][s.index];
    // With a deadline, the window ends when the host clock passed it, or at a commit of this
    // host sent before then (a commit under way still decides).
    std::size_t hmax = s.h1;
    if (s.deadline && s.pass_step != UINT64_MAX) {
      std::size_t hd = s.h_pass;
      for (std::size_t c = s.h_pass; c < in.history.size(); ++c) {
        const CommitRecord& r = in.history[c];
        if (r.host == s.host && r.incarnation == s.incarnation && r.sent_step < s.pass_step) hd = c + 1;
      }
      hmax = std::min(hmax, hd);
    }
    std::string why;
    if (hmax >= s.h0 && judge(s, e, s.outcome, hmax, why)) continue;
    std::string late;
    if (hmax < s.h1 && judge(s, e, s.outcome, s.h1, late)) why = "it was decided after its deadline passed";
    return "(1) host " + std::to_string(s.host) + " partition " + std::to_string(s.partition) +
           " event #" + std::to_string(s.index) + " " + show(e) +
           (s.deadline ? " (with deadline)" : "") + ": reported " + show(s.outcome) + ", but " + why;
  }

  // (4) The result equals a sequential run of every stream. Across partitions the global key
  // (trade_id, version) goes to whichever partition stored it: another partition's copy is
  // rejected there, whatever the order.
  for (int p = 0; p < np; ++p) {
    PartitionState st;
    std::vector<const TradeEvent*> accepted;
    std::set<IdempotencyKey> own;
    for (const TradeEvent& e : in.streams[p]) {
      IdempotencyKey key{e.trade_id, e.version};
      auto k = keys.find(key);
      if (own.count(key) || (k != keys.end() && k->second.partition != p)) continue;
      if (decide(in.processor, st, e).kind != OutcomeKind::Accepted) continue;
      st = apply(in.processor, st, e);
      own.insert(key);
      accepted.push_back(&e);
    }
    for (std::size_t i = 0; i < std::max(accepted.size(), stored[p].size()); ++i) {
      if (i >= accepted.size() || i >= stored[p].size() ||
          !same_event(*accepted[i], stored[p][i].stored->event))
        return "(4) partition " + std::to_string(p) + " differs from a sequential run at seq " +
               std::to_string(i + 1) + ": sequential " +
               (i < accepted.size() ? show(*accepted[i]) : "nothing") + ", stored " +
               (i < stored[p].size() ? show(stored[p][i].stored->event) : "nothing");
    }
    if (!(st.position == states[p].back().position))
      return "(4) partition " + std::to_string(p) + ": position differs from a sequential run";
  }
  return {};
}

}  // namespace sim
