//! [`ResponseFuture`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;

use super::service::finish;
use crate::decision::Decision;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

pin_project! {
    /// Response future of [`RateLimit`](super::RateLimit).
    pub struct ResponseFuture<F>
    where
        F: Future,
    {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F>
    where
        F: Future,
    {
        // The inner service was called; `decision` is `None` for requests that are not
        // limited (no headers to add).
        Inner { #[pin] future: F, decision: Option<Decision> },
        // Refused in `call`: the 429 is ready.
        Refused { output: Option<F::Output> },
        // A cluster decision is in flight; the inner call follows inside the box.
        Deciding { future: BoxFuture<F::Output> },
    }
}

impl<F: Future> ResponseFuture<F> {
    pub(super) fn passthrough(future: F) -> Self {
        ResponseFuture {
            state: State::Inner {
                future,
                decision: None,
            },
        }
    }

    pub(super) fn admitted(future: F, decision: Decision) -> Self {
        ResponseFuture {
            state: State::Inner {
                future,
                decision: Some(decision),
            },
        }
    }

    pub(super) fn deciding(future: impl Future<Output = F::Output> + Send + 'static) -> Self {
        ResponseFuture {
            state: State::Deciding {
                future: Box::pin(future),
            },
        }
    }
}

impl<F, B, E> ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    pub(super) fn refused(response: Response<B>) -> Self {
        ResponseFuture {
            state: State::Refused {
                output: Some(Ok(response)),
            },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { future, decision } => {
                let mut response = ready!(future.poll(cx))?;
                if let Some(decision) = decision.take() {
                    finish(&decision, &mut response);
                    response.extensions_mut().insert(decision);
                }
                Poll::Ready(Ok(response))
            }
            StateProj::Refused { output } => match output.take() {
                Some(output) => Poll::Ready(output),
                None => panic!("ResponseFuture polled after completion"),
            },
            StateProj::Deciding { future } => future.as_mut().poll(cx),
        }
    }
}

impl<F: Future> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
