//! `GET /v1/products` and `GET /v1/products/{id}`: the catalogue, cached in the gateway,
//! filtered by what the partner may see, paginated with opaque cursors, with ETags.

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use gateway_core::{PartnerContext, Problem, ProblemType, Route};
use gateway_referral::{PartnerProducts, ProductAnswer, ProductQuery, ProductsAnswer};

use super::{HandlerError, snapshot};
use crate::body::Body;
use crate::state::GatewayState;

/// Answers a products route.
pub(super) async fn handle(
    state: &GatewayState,
    route: Route,
    param: Option<&str>,
    req: Request<Incoming>,
) -> Result<Response<Body>, HandlerError> {
    let config = snapshot(&req)?;
    let partner = req
        .extensions()
        .get::<PartnerContext>()
        .and_then(|p| config.0.partner(&p.partner))
        .ok_or_else(|| HandlerError::Failed("products route without a partner".into()))?;
    let visibility = PartnerProducts {
        partner: partner.id.clone(),
        product_types: partner.product_types.clone(),
    };
    let if_none_match = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    let cache_control = state.catalogue.cache_control();
    match route {
        Route::Product => {
            let id = param.unwrap_or_default();
            let answer = state
                .catalogue
                .product(&visibility, id, if_none_match)
                .await
                .map_err(|e| HandlerError::Failed(Box::new(e)))?;
            match answer {
                None => Err(Problem::new(ProblemType::ProductNotFound).into()),
                Some(ProductAnswer::Found { body, etag }) => {
                    Ok(page(StatusCode::OK, body, &etag, &cache_control, None))
                }
                Some(ProductAnswer::NotModified { etag }) => Ok(page(
                    StatusCode::NOT_MODIFIED,
                    Vec::new(),
                    &etag,
                    &cache_control,
                    None,
                )),
            }
        }
        _ => {
            let query = ProductQuery::parse(req.uri().query()).map_err(|invalid| {
                HandlerError::Problem(
                    Problem::new(ProblemType::InvalidQuery)
                        .with_detail(format!(
                            "{} problem(s) in the query string",
                            invalid.violations.len()
                        ))
                        .with_errors(invalid.violations),
                )
            })?;
            let answer = state
                .catalogue
                .list(&visibility, &query, if_none_match)
                .await
                .map_err(|e| HandlerError::Failed(Box::new(e)))?;
            match answer {
                ProductsAnswer::Page(p) => Ok(page(
                    StatusCode::OK,
                    p.body,
                    &p.etag,
                    &cache_control,
                    p.next.as_deref(),
                )),
                ProductsAnswer::NotModified { etag } => Ok(page(
                    StatusCode::NOT_MODIFIED,
                    Vec::new(),
                    &etag,
                    &cache_control,
                    None,
                )),
            }
        }
    }
}

fn page(
    status: StatusCode,
    body: Vec<u8>,
    etag: &str,
    cache_control: &str,
    next: Option<&str>,
) -> Response<Body> {
    let mut response = Response::new(if body.is_empty() {
        Body::empty()
    } else {
        Body::from(Bytes::from(body))
    });
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if status == StatusCode::OK {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    if let Ok(value) = HeaderValue::from_str(cache_control) {
        headers.insert(header::CACHE_CONTROL, value);
    }
    if let Some(next) = next
        && let Ok(value) = HeaderValue::from_str(&format!("<{next}>; rel=\"next\""))
    {
        headers.insert(header::LINK, value);
    }
    response
}
