//! Load-test tools (work in progress).
