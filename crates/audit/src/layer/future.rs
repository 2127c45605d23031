//! The response future of [`Audit`](super::Audit).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use gateway_core::InteractionId;
use http::Response;
use pin_project_lite::pin_project;

use super::{LayerShared, RequestFacts, unavailable};
use crate::writer::Append;

pin_project! {
    /// Response future of [`Audit`](super::Audit): the inner response, then (in `Sync` mode)
    /// the wait for its record to be durable.
    pub struct ResponseFuture<F, B, E> {
        #[pin]
        state: State<F, B, E>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B, E> {
        // The writer is known to be failing: answered without calling the inner service.
        Reject { response: Option<Response<B>> },
        // Waiting for the inner service.
        Inner {
            #[pin]
            future: F,
            facts: Option<RequestFacts>,
            shared: Arc<LayerShared>,
        },
        // Waiting for the record; the response is held back until it is durable.
        Append {
            append: Append,
            outcome: Option<Result<Response<B>, E>>,
            interaction: Option<InteractionId>,
        },
    }
}

impl<F, B, E> ResponseFuture<F, B, E> {
    pub(super) fn reject(response: Response<B>) -> Self {
        ResponseFuture {
            state: State::Reject {
                response: Some(response),
            },
        }
    }

    pub(super) fn inner(future: F, facts: RequestFacts, shared: Arc<LayerShared>) -> Self {
        ResponseFuture {
            state: State::Inner {
                future,
                facts: Some(facts),
                shared,
            },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: From<Bytes>,
{
    type Output = Result<Response<B>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            match this.state.as_mut().project() {
                StateProj::Reject { response } => {
                    // Polled again after completion would be a caller bug; answer 503 again
                    // rather than panic.
                    let response = response.take().unwrap_or_else(|| unavailable(None));
                    return Poll::Ready(Ok(response));
                }
                StateProj::Inner {
                    future,
                    facts,
                    shared,
                } => {
                    let outcome = ready!(future.poll(cx));
                    let Some(facts) = facts.take() else {
                        return Poll::Ready(outcome);
                    };
                    let record = match &outcome {
                        Ok(response) => shared.record(&facts, Some(response)),
                        Err(_) => shared.record::<B>(&facts, None),
                    };
                    let append = shared.writer.append(&record);
                    this.state.set(State::Append {
                        append,
                        outcome: Some(outcome),
                        interaction: facts.interaction,
                    });
                }
                StateProj::Append {
                    append,
                    outcome,
                    interaction,
                } => {
                    let appended = ready!(Pin::new(append).poll(cx));
                    let Some(outcome) = outcome.take() else {
                        return Poll::Ready(Ok(unavailable(interaction.as_ref())));
                    };
                    return Poll::Ready(match (appended, outcome) {
                        (Ok(_), outcome) => outcome,
                        // Fail closed: the record is not durable, so nothing of the response
                        // (headers, body) leaves; the partner gets 503 and may retry.
                        (Err(e), Ok(_dropped)) => {
                            tracing::warn!(error = %e, "Response withheld: its audit record is not durable.");
                            Ok(unavailable(interaction.as_ref()))
                        }
                        // Already an error for the rescue layer; nothing is released either way.
                        (Err(_), Err(e)) => Err(e),
                    });
                }
            }
        }
    }
}
