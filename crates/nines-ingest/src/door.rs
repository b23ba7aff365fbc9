//! The gRPC server every door shares, and what it refuses before a body is decoded.
//!
//! In order, for every call:
//! 1. **Connections** are capped (`ingest.max_connections`); past it, accepting waits.
//!    HTTP/2 streams per connection are capped (`ingest.max_concurrent_streams`).
//! 2. **Authentication** ([`Admission`]) reads only the headers: a call without a known key is
//!    answered UNAUTHENTICATED before its body is read.
//! 3. **In-flight calls** are capped (`ingest.max_in_flight_requests`); a call waits for a
//!    slot holding nothing but its headers and its HTTP/2 window. Every call, waiting
//!    included, ends by `ingest.request_timeout`.
//! 4. **The body** is read by us ([`crate::frame`]): a message longer than
//!    `ingest.max_request_bytes` is refused on its length prefix, and a gzip message is
//!    inflated up to the same limit. Each refusal is a typed error (INVALID_ARGUMENT, counted
//!    by reason), never tonic's message text. Tonic then gets one uncompressed message,
//!    scanned on the wire ([`crate::wire`]): more events than `ingest.max_events_per_request`, or more than
//!    `ingest.max_decoded_bytes` once decoded, is INVALID_ARGUMENT before anything is
//!    decoded. (A body too short to reach `max_decoded_bytes` whatever it holds has only its
//!    events counted: [`wire::scan_within`].)
//!
//! So ingest's memory is bounded by the producer's queue plus
//! `max_in_flight_requests × (2 × max_request_bytes + max_decoded_bytes)`, whatever clients
//! send (the message as read here, and tonic's copy of it while it decodes).

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use ::metrics::{counter, gauge};
use bytes::Bytes;
use futures::future::BoxFuture;
use prost::Message;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic::codegen::http;
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::{Request, Response, Status};
use tonic_prost::ProstEncoder;

use crate::auth::{Auth, Tenant};
use crate::config::IngestConfig;
use crate::frame;
use crate::metrics;
use crate::otlp::Otlp;
use crate::wire::{self, Shape, WireError};
use crate::{Error, NativeIngest, Pipeline, Result};

/// One unary gRPC method behind a [`Door`]: its path, the shape its request is scanned
/// against, and the handler.
pub trait Method: Clone + Send + Sync + 'static {
    /// The request as the handler takes it: a prost message, or the message's bytes for a
    /// handler that reads the wire itself (`otlp_wire`).
    type Req: Send + 'static;
    type Resp: Message + Send + 'static;
    /// gRPC service name, e.g. `nines.v1.IngestService`.
    const SERVICE: &'static str;
    /// Full path, e.g. `/nines.v1.IngestService/Push`.
    const PATH: &'static str;
    /// Where the events are, for the refusal: e.g. `resource_spans`.
    const EVENTS_FIELD: &'static str;
    /// What the events are called, for the refusal: e.g. `spans`.
    const EVENTS_NAME: &'static str;
    fn shape() -> &'static Shape;
    /// Decodes a message that [`check_wire`] has passed.
    fn decode(message: Bytes) -> std::result::Result<Self::Req, WireError>;
    fn call(
        &self,
        request: Request<Self::Req>,
    ) -> BoxFuture<'static, Result<Response<Self::Resp>, Status>>;
}

/// [`Method::decode`] for a prost message.
pub fn prost_decode<T: Message + Default>(message: Bytes) -> std::result::Result<T, WireError> {
    T::decode(message).map_err(|e| WireError::Malformed(e.to_string()))
}

/// Bounds the scan enforces.
#[derive(Debug, Clone, Copy)]
pub struct WireLimits {
    pub max_events: usize,
    pub max_decoded_bytes: usize,
    pub max_request_bytes: usize,
}

impl WireLimits {
    pub fn from_config(cfg: &IngestConfig) -> Self {
        Self {
            max_events: cfg.limits.max_events_per_request,
            max_decoded_bytes: cfg.max_decoded_bytes,
            max_request_bytes: cfg.max_request_bytes,
        }
    }
}

/// Checks a body against `limits` before it is decoded.
pub fn check_wire<M: Method>(bytes: &[u8], limits: &WireLimits) -> Result<()> {
    let sizing =
        wire::scan_within(M::shape(), bytes, limits.max_decoded_bytes).map_err(Error::Wire)?;
    if sizing.events > limits.max_events {
        return Err(Error::TooManyEvents {
            field: M::EVENTS_FIELD,
            what: M::EVENTS_NAME,
            count: sizing.events,
            limit: limits.max_events,
        });
    }
    if sizing.decoded_bytes > limits.max_decoded_bytes {
        return Err(Error::DecodedTooLarge {
            bytes: sizing.decoded_bytes,
            limit: limits.max_decoded_bytes,
        });
    }
    Ok(())
}

/// Prost's codec with [`check_wire`] in front of its decoder.
#[derive(Debug)]
struct CheckedCodec<M: Method> {
    limits: WireLimits,
    _m: PhantomData<fn() -> M>,
}

#[derive(Debug)]
struct CheckedDecoder<M: Method> {
    limits: WireLimits,
    _m: PhantomData<fn() -> M>,
}

impl<M: Method> Codec for CheckedCodec<M> {
    type Encode = M::Resp;
    type Decode = M::Req;
    type Encoder = ProstEncoder<M::Resp>;
    type Decoder = CheckedDecoder<M>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        CheckedDecoder {
            limits: self.limits,
            _m: PhantomData,
        }
    }
}

impl<M: Method> Decoder for CheckedDecoder<M> {
    type Item = M::Req;
    type Error = Status;

    /// Scans, then decodes. Both refusals are typed errors mapped to INVALID_ARGUMENT here,
    /// not tonic's INTERNAL rewritten by its message text.
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<M::Req>, Status> {
        use bytes::Buf;
        let decoded = check_wire::<M>(src.chunk(), &self.limits)
            .and_then(|()| M::decode(src.copy_to_bytes(src.remaining())).map_err(Error::Wire));
        decoded.map(Some).map_err(|e| {
            metrics::push_rejected(e.reject_reason());
            e.into()
        })
    }
}

/// A tonic service for one [`Method`], decoding through [`CheckedCodec`].
#[derive(Debug, Clone)]
pub struct Door<M: Method> {
    method: M,
    limits: WireLimits,
}

impl<M: Method> Door<M> {
    pub fn new(method: M, limits: WireLimits) -> Self {
        Self { method, limits }
    }
}

impl<M: Method> NamedService for Door<M> {
    const NAME: &'static str = M::SERVICE;
}

#[derive(Debug)]
struct Handler<M>(M);

impl<M: Method> UnaryService<M::Req> for Handler<M> {
    type Response = M::Resp;
    type Future = BoxFuture<'static, Result<Response<M::Resp>, Status>>;

    fn call(&mut self, request: Request<M::Req>) -> Self::Future {
        self.0.call(request)
    }
}

impl<M: Method> tower::Service<http::Request<tonic::body::Body>> for Door<M> {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        if req.uri().path() != M::PATH {
            return Box::pin(async { Ok(Status::unimplemented("no such method").into_http()) });
        }
        let method = self.method.clone();
        let limits = self.limits;
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            // Tonic must not decompress again what `frame` hands it uncompressed.
            let encoding = parts.headers.remove("grpc-encoding");
            let message = match frame::read_message(
                body,
                encoding.as_ref().map(|v| v.as_bytes()),
                limits.max_request_bytes,
            )
            .await
            {
                Ok(message) => message,
                Err(e) => {
                    // A client that went away mid-body was not refused: counted apart.
                    let gone = matches!(e, frame::FrameError::Body(_));
                    let unknown_encoding = matches!(e, frame::FrameError::Encoding(_));
                    let e = Error::Frame(e);
                    if gone {
                        metrics::call_abandoned();
                    } else {
                        metrics::push_rejected(e.reject_reason());
                    }
                    let mut response = Status::from(e).into_http();
                    if unknown_encoding {
                        response.headers_mut().insert(
                            "grpc-accept-encoding",
                            http::HeaderValue::from_static("gzip"),
                        );
                    }
                    return Ok(response);
                }
            };
            let req = http::Request::from_parts(
                parts,
                tonic::body::Body::new(http_body_util::Full::new(message)),
            );
            let codec = CheckedCodec::<M> {
                limits,
                _m: PhantomData,
            };
            // `frame` has checked the length; tonic's own check would only say it again.
            let mut grpc = Grpc::new(codec).max_decoding_message_size(usize::MAX);
            Ok(grpc.unary(Handler(method), req).await)
        })
    }
}

/// Authenticates from the headers, then waits for an in-flight slot, all within the
/// request timeout (see the module docs).
#[derive(Debug, Clone)]
pub struct Admission<S> {
    inner: S,
    auth: Auth,
    in_flight: Arc<Semaphore>,
    timeout: Duration,
}

/// Builds [`Admission`] around the router.
#[derive(Debug, Clone)]
pub struct AdmissionLayer {
    auth: Auth,
    in_flight: Arc<Semaphore>,
    timeout: Duration,
}

impl AdmissionLayer {
    pub fn new(auth: Auth, cfg: &IngestConfig) -> Self {
        Self {
            auth,
            in_flight: Arc::new(Semaphore::new(cfg.max_in_flight_requests.max(1))),
            timeout: cfg.request_timeout,
        }
    }
}

impl<S> tower::Layer<S> for AdmissionLayer {
    type Service = Admission<S>;

    fn layer(&self, inner: S) -> Admission<S> {
        Admission {
            inner,
            auth: self.auth.clone(),
            in_flight: self.in_flight.clone(),
            timeout: self.timeout,
        }
    }
}

impl<S, B> tower::Service<http::Request<B>> for Admission<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        match self.auth.tenant_from_headers(req.headers()) {
            Ok(tenant) => {
                req.extensions_mut().insert(Tenant(tenant));
            }
            Err(e) => {
                metrics::push_rejected(e.reject_reason());
                return Box::pin(std::future::ready(Ok(Status::from(e).into_http())));
            }
        }
        // The clone that was made ready is the one called (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let in_flight = self.in_flight.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            let admitted = async {
                let _permit = in_flight.acquire_owned().await.expect("never closed");
                gauge!(metrics::REQUESTS_IN_FLIGHT).increment(1.0);
                let _gauge = scopeguard(|| gauge!(metrics::REQUESTS_IN_FLIGHT).decrement(1.0));
                inner.call(req).await
            };
            match tokio::time::timeout(timeout, admitted).await {
                Ok(result) => result,
                Err(_) => {
                    let e = Error::RequestTimeout(timeout);
                    metrics::push_rejected(e.reject_reason());
                    Ok(Status::from(e).into_http())
                }
            }
        })
    }
}

/// Runs `f` when dropped (a gauge decremented however the call ends).
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

/// An accepted connection holding one of `ingest.max_connections` slots until it closes. A
/// client must send its first bytes (the HTTP/2 preface) within `ingest.handshake_timeout`,
/// or the connection is closed: idle sockets cannot hold every slot.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    first_bytes_by: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        gauge!(metrics::CONNECTIONS).decrement(1.0);
    }
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.stream).poll_read(cx, buf);
        if self.first_bytes_by.is_some() {
            match &read {
                Poll::Ready(Ok(())) if buf.filled().len() > before => self.first_bytes_by = None,
                Poll::Pending => {
                    let deadline = self.first_bytes_by.as_mut().expect("checked above");
                    if deadline.as_mut().poll(cx).is_ready() {
                        counter!(metrics::CONNECTIONS_TIMED_OUT).increment(1);
                        return Poll::Ready(Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "no HTTP/2 preface within ingest.handshake_timeout",
                        )));
                    }
                }
                _ => {}
            }
        }
        read
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Accepted connections, at most `max` open at once: past it, accepting waits for one to
/// close (the kernel's backlog holds the rest). Nagle is off: small HTTP/2 frames (headers,
/// trailers, acks) otherwise wait for the peer's delayed ACK, about 40 ms per push.
pub fn incoming(
    listener: TcpListener,
    max: usize,
    handshake_timeout: Duration,
) -> impl futures::Stream<Item = std::io::Result<Conn>> {
    let slots = Arc::new(Semaphore::new(max.max(1)));
    futures::stream::unfold((listener, slots), move |(listener, slots)| async move {
        let slot = slots.clone().acquire_owned().await.expect("never closed");
        let accepted = listener.accept().await;
        if accepted.is_err() {
            // Out of file descriptors, say: do not spin on it.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let conn = accepted.and_then(|(stream, _): (TcpStream, SocketAddr)| {
            stream.set_nodelay(true)?;
            gauge!(metrics::CONNECTIONS).increment(1.0);
            Ok(Conn {
                stream,
                _slot: slot,
                first_bytes_by: Some(Box::pin(tokio::time::sleep(handshake_timeout))),
            })
        });
        Some((conn, (listener, slots)))
    })
}

/// Serves `nines.v1` and OTLP (traces, logs, metrics) on `listener` until `stop`, with every
/// bound of the module docs applied.
pub async fn serve(
    listener: TcpListener,
    pipeline: Pipeline,
    auth: Auth,
    cfg: &IngestConfig,
    stop: impl std::future::Future<Output = ()>,
) -> std::result::Result<(), tonic::transport::Error> {
    let limits = WireLimits::from_config(cfg);
    let (traces, logs, metrics) = Otlp::new(pipeline.clone(), auth.clone()).doors(limits);
    tonic::transport::Server::builder()
        .max_concurrent_streams(cfg.max_concurrent_streams)
        // Dead peers are noticed and their slots freed.
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .layer(AdmissionLayer::new(auth.clone(), cfg))
        .add_service(Door::new(NativeIngest::new(pipeline, auth), limits))
        .add_service(traces)
        .add_service(logs)
        .add_service(metrics)
        .serve_with_incoming_shutdown(
            incoming(listener, cfg.max_connections, cfg.handshake_timeout),
            stop,
        )
        .await
}
