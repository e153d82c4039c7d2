//! The Swagger UI's files under `/docs/`, as browsers should get them: about 2 MB of scripts
//! and styles, which change only with the binary. Each comes with a strong `ETag` (a digest of
//! what is sent) and `Cache-Control: no-cache`, so a browser revalidates and gets
//! `304 Not Modified` instead of the file again; and text goes gzip-compressed to a client
//! that accepts it (the largest script, 1.5 MB, is about a quarter of that). Both are worked
//! out once per file and kept.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, LazyLock, Mutex};

use actix_web::HttpMessage;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::ServiceResponse;
use actix_web::http::header::{self, AcceptEncoding, Encoding, EntityTag, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::web::Bytes;

/// One file as served: its length and digest, and its gzip-compressed copy when it is text.
struct Served {
    len: usize,
    digest: String,
    gzip: Option<Bytes>,
}

/// The files served so far, by path.
static SERVED: LazyLock<Mutex<HashMap<String, Arc<Served>>>> = LazyLock::new(Default::default);

/// `response`, a Swagger UI file answered to a `GET`, with its validator and caching
/// headers, compressed when the client accepts it, or `304 Not Modified` when its
/// `If-None-Match` holds the current `ETag`. Anything else goes through unchanged.
pub async fn serve(
    response: ServiceResponse<BoxBody>,
    path: &str,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if response.status() != StatusCode::OK || response.request().method() != Method::GET {
        return Ok(response);
    }
    let (req, response) = response.into_parts();
    let (head, body) = response.into_parts();
    let body = actix_web::body::to_bytes(body)
        .await
        .map_err(|e| actix_web::error::ErrorInternalServerError(e.to_string()))?;
    let text = head
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(compressible);
    let served = served(path, &body, text);
    let gzip = served.gzip.as_ref().filter(|_| {
        req.get_header::<AcceptEncoding>().is_some_and(|accepted| {
            accepted.negotiate([Encoding::gzip(), Encoding::identity()].iter())
                == Some(Encoding::gzip())
        })
    });
    // Each coding is its own representation, with its own strong validator.
    let etag = EntityTag::new_strong(match gzip {
        Some(_) => format!("{}-gzip", served.digest),
        None => served.digest.clone(),
    });
    let fresh = super::not_modified(&req, &etag);
    let mut response = head.set_body(match (fresh, gzip) {
        (true, _) => BoxBody::new(()),
        (false, Some(gzip)) => gzip.clone().boxed(),
        (false, None) => body.boxed(),
    });
    if fresh {
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response.headers_mut().remove(header::CONTENT_TYPE);
    }
    let headers = response.headers_mut();
    headers.remove(header::CONTENT_LENGTH);
    if gzip.is_some() && !fresh {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    if served.gzip.is_some() {
        headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    headers.insert(
        header::ETAG,
        HeaderValue::from_str(&etag.to_string()).expect("a hex digest is a valid ETag"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(ServiceResponse::new(req, response))
}

/// Whether a file of `content_type` is worth compressing: text, scripts, JSON and SVG.
fn compressible(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.starts_with("text/")
        || matches!(
            essence,
            "application/javascript" | "application/json" | "image/svg+xml"
        )
}

/// The kept digest and compressed copy of the file at `path`, made now if it has none (or
/// one of another length: the files are the binary's own, so the same path is the same
/// file, and digesting 1.5 MB again for every request would cost more than sending it).
fn served(path: &str, body: &Bytes, text: bool) -> Arc<Served> {
    let mut served = SERVED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(kept) = served.get(path).filter(|kept| kept.len == body.len()) {
        return kept.clone();
    }
    let digest = super::digest_tag(body);
    let gzip = text.then(|| {
        let mut encoder =
            flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 3), Default::default());
        encoder
            .write_all(body)
            .and_then(|()| encoder.finish())
            .map(Bytes::from)
            .expect("writing to memory does not fail")
    });
    let kept = Arc::new(Served {
        len: body.len(),
        digest,
        gzip,
    });
    served.insert(path.to_owned(), kept.clone());
    kept
}
