//! Reading the guard's refusal events from its pinned ring buffer.
