//! Safe wrappers around the Cyclone DDS C API, reached through `cyclors`.
//!
//! This is the only module of the workspace with `unsafe` code. Everything
//! above it deals in Rust values: byte payloads, GUIDs, QoS structs.
//!
//! Invariants (each `unsafe` block relies on one of these):
//! 1. Every entity handle stored in a [`Participant`], [`Writer`] or
//!    [`Reader`] was returned positive by Cyclone, is owned by exactly that
//!    value, and is deleted exactly once, in its `Drop`.
//! 2. Samples are opaque CDR blobs: topics use cyclocut's blob sertype
//!    (`cdds_create_blob_topic`), so Cyclone never runs type-specific C code
//!    on our payloads; the bytes it hands back always start with the 4-byte
//!    encapsulation header and are copied out before the serdata is released.
//! 3. An endpoint's listener argument is an `Arc<Notify>` turned into a raw
//!    pointer when the reader or writer is created and turned back into an
//!    `Arc` only after `dds_delete` of that entity has returned. `dds_delete`
//!    waits for running listener callbacks, so the pointer is valid for every
//!    callback.
//! 4. Pointers returned by Cyclone for builtin-topic data and QoS user_data
//!    are freed with the matching Cyclone free function and never kept.

use std::ffi::{c_void, CStr, CString};
use std::mem::MaybeUninit;
use std::ptr;
use std::sync::Arc;

use cyclors as c;
use tokio::sync::Notify;

/// An error returned by a Cyclone DDS call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Cyclone DDS {operation} failed: {reason} (code {code})")]
pub struct DdsError {
    pub operation: &'static str,
    pub code: i32,
    pub reason: String,
}

impl DdsError {
    fn from_code(operation: &'static str, code: i32) -> Self {
        // SAFETY: dds_strretcode accepts any value and returns a pointer to a
        // static, NUL-terminated string (never null).
        let reason = unsafe { CStr::from_ptr(c::dds_strretcode(code)) }
            .to_string_lossy()
            .into_owned();
        DdsError {
            operation,
            code,
            reason,
        }
    }

    fn invalid(operation: &'static str, reason: &str) -> Self {
        DdsError {
            operation,
            code: c::DDS_RETCODE_BAD_PARAMETER,
            reason: reason.to_string(),
        }
    }
}

fn check(operation: &'static str, rc: c::dds_return_t) -> Result<c::dds_return_t, DdsError> {
    if rc < 0 {
        Err(DdsError::from_code(operation, rc))
    } else {
        Ok(rc)
    }
}

fn c_string(operation: &'static str, s: &str) -> Result<CString, DdsError> {
    CString::new(s).map_err(|_| DdsError::invalid(operation, "name contains a NUL byte"))
}

/// Reliability, durability and history: the QoS that ROS 2 profiles set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointQos {
    pub reliable: bool,
    pub transient_local: bool,
    /// Keep-last depth; 0 means keep-all.
    pub depth: u32,
}

/// Owned `dds_qos_t`, deleted on drop.
struct Qos(*mut c::dds_qos_t);

impl Qos {
    fn new(operation: &'static str) -> Result<Self, DdsError> {
        // SAFETY: plain allocation; null is checked.
        let q = unsafe { c::dds_create_qos() };
        if q.is_null() {
            return Err(DdsError::invalid(operation, "out of memory creating QoS"));
        }
        Ok(Qos(q))
    }

    fn user_data(self, user_data: &str) -> Self {
        // SAFETY: self.0 is a live qos (invariant 1 by analogy: owned here);
        // Cyclone copies the bytes.
        unsafe { c::dds_qset_userdata(self.0, user_data.as_ptr().cast(), user_data.len()) };
        self
    }

    fn endpoint(
        operation: &'static str,
        qos: &EndpointQos,
        user_data: &str,
    ) -> Result<Self, DdsError> {
        let q = Qos::new(operation)?.user_data(user_data);
        let reliability = if qos.reliable {
            c::dds_reliability_kind_DDS_RELIABILITY_RELIABLE
        } else {
            c::dds_reliability_kind_DDS_RELIABILITY_BEST_EFFORT
        };
        let durability = if qos.transient_local {
            c::dds_durability_kind_DDS_DURABILITY_TRANSIENT_LOCAL
        } else {
            c::dds_durability_kind_DDS_DURABILITY_VOLATILE
        };
        let (history, depth) = if qos.depth == 0 {
            (c::dds_history_kind_DDS_HISTORY_KEEP_ALL, 1)
        } else {
            (
                c::dds_history_kind_DDS_HISTORY_KEEP_LAST,
                i32::try_from(qos.depth).unwrap_or(i32::MAX),
            )
        };
        let xcdr1: [c::dds_data_representation_id_t; 1] =
            [c::DDS_DATA_REPRESENTATION_XCDR1 as c::dds_data_representation_id_t];
        // SAFETY: q.0 is a live qos owned by `q`; every setter copies its input.
        unsafe {
            // rmw_cyclonedds blocks a reliable writer for at most 100 ms.
            c::dds_qset_reliability(q.0, reliability, 100_000_000);
            c::dds_qset_durability(q.0, durability);
            c::dds_qset_history(q.0, history, depth);
            // As rmw_cyclonedds: never dispose instances when a writer goes away.
            c::dds_qset_writer_data_lifecycle(q.0, false);
            // We only ever put XCDR1 on the wire, as ROS 2 Jazzy does.
            c::dds_qset_data_representation(q.0, 1, xcdr1.as_ptr());
        }
        Ok(q)
    }
}

impl Drop for Qos {
    fn drop(&mut self) {
        // SAFETY: created by dds_create_qos, deleted once.
        unsafe { c::dds_delete_qos(self.0) }
    }
}

/// A DDS domain participant: one per process and domain, like an rmw context.
#[derive(Debug)]
pub struct Participant {
    handle: c::dds_entity_t,
    /// The domain entity, when this participant created its domain with a
    /// configuration of its own ([`Participant::with_config`]).
    domain: Option<c::dds_entity_t>,
}

impl Participant {
    /// Joins `domain_id`. Cyclone reads `CYCLONEDDS_URI` itself.
    pub fn new(domain_id: u32, user_data: &str) -> Result<Self, DdsError> {
        let qos = Qos::new("create participant")?.user_data(user_data);
        // SAFETY: qos is live for the call; no listener.
        let handle = unsafe { c::dds_create_participant(domain_id, qos.0, ptr::null()) };
        check("create participant", handle)?;
        Ok(Participant {
            handle,
            domain: None,
        })
    }

    /// Creates domain `domain_id` in this process with its own Cyclone
    /// configuration (`config`: XML, in place of `CYCLONEDDS_URI`) and joins
    /// it. Fails if this process already has that domain.
    pub fn with_config(domain_id: u32, config: &str, user_data: &str) -> Result<Self, DdsError> {
        let operation = "create domain";
        let config = c_string(operation, config)?;
        // SAFETY: config is a NUL-terminated string Cyclone only reads
        // during the call.
        let domain = check(operation, unsafe {
            c::dds_create_domain(domain_id, config.as_ptr())
        })?;
        match Participant::new(domain_id, user_data) {
            Ok(mut participant) => {
                participant.domain = Some(domain);
                Ok(participant)
            }
            Err(e) => {
                // SAFETY: the domain was created above and nothing else
                // holds it.
                unsafe { c::dds_delete(domain) };
                Err(e)
            }
        }
    }

    pub fn guid(&self) -> Result<[u8; 16], DdsError> {
        guid_of("get participant guid", self.handle)
    }

    fn blob_topic(&self, topic: &str, type_name: &str) -> Result<c::dds_entity_t, DdsError> {
        let operation = "create topic";
        let topic = c_string(operation, topic)?;
        let type_name = c_string(operation, type_name)?;
        // SAFETY: the participant handle is live (invariant 1); cyclocut copies
        // both strings into the sertype and topic (it takes `char *` only for
        // historical reasons and does not write through them).
        let handle = unsafe {
            c::cdds_create_blob_topic(
                self.handle,
                topic.as_ptr().cast_mut(),
                type_name.as_ptr().cast_mut(),
                true,
            )
        };
        check(operation, handle)
    }
}

impl Drop for Participant {
    fn drop(&mut self) {
        // SAFETY: invariant 1. Deleting the participant deletes any child
        // entity still alive, so this also covers leaked endpoints; the
        // domain (if ours) goes after its last participant.
        unsafe {
            c::dds_delete(self.handle);
            if let Some(domain) = self.domain {
                c::dds_delete(domain);
            }
        }
    }
}

fn guid_of(operation: &'static str, handle: c::dds_entity_t) -> Result<[u8; 16], DdsError> {
    let mut guid = MaybeUninit::<c::dds_guid_t>::zeroed();
    // SAFETY: handle is live; guid points to writable memory of the right type.
    check(operation, unsafe {
        c::dds_get_guid(handle, guid.as_mut_ptr())
    })?;
    // SAFETY: dds_get_guid succeeded and filled it in.
    Ok(unsafe { guid.assume_init() }.v)
}

fn instance_handle_of(handle: c::dds_entity_t) -> Result<u64, DdsError> {
    let mut ih: c::dds_instance_handle_t = 0;
    // SAFETY: handle is live; ih is a valid out pointer.
    check("get instance handle", unsafe {
        c::dds_get_instance_handle(handle, &mut ih)
    })?;
    Ok(ih)
}

/// `dds_get_matched_subscriptions` / `dds_get_matched_publications`.
type MatchedListFn =
    unsafe extern "C" fn(c::dds_entity_t, *mut c::dds_instance_handle_t, usize) -> c::dds_return_t;

/// Instance handles of the endpoints matched with `handle`.
fn matched_handles(handle: c::dds_entity_t, list: MatchedListFn) -> Vec<c::dds_instance_handle_t> {
    // SAFETY: handle is live; with a null buffer of size 0 Cyclone only
    // returns the count.
    let count = unsafe { list(handle, ptr::null_mut(), 0) };
    let mut handles = vec![0; usize::try_from(count).unwrap_or(0)];
    // SAFETY: the buffer holds handles.len() entries; Cyclone writes at most
    // that many and returns how many match now (which may have changed).
    let n = unsafe { list(handle, handles.as_mut_ptr(), handles.len()) };
    handles.truncate(usize::try_from(n).unwrap_or(0));
    handles
}

/// What discovery says about a remote endpoint matched with one of ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchedEndpoint {
    /// Its DDS GUID; the first two bytes of most vendors' GUIDs are their
    /// RTPS vendor id (01.10 Cyclone DDS, 01.0f Fast DDS).
    pub guid: [u8; 16],
    pub user_data: Vec<u8>,
}

/// Copies GUID and user_data QoS out of builtin-topic endpoint data and
/// frees it.
///
/// # Safety
/// `ep` must be null or a pointer returned by `dds_get_matched_*_data`.
unsafe fn take_endpoint(ep: *mut c::dds_builtintopic_endpoint_t) -> Option<MatchedEndpoint> {
    if ep.is_null() {
        return None;
    }
    let guid = (*ep).key.v;
    let user_data = user_data_of((*ep).qos);
    c::dds_builtintopic_free_endpoint(ep);
    Some(MatchedEndpoint { guid, user_data })
}

/// An endpoint entity and its topic, created with a listener that wakes a
/// [`Notify`]. Deletes both and reclaims the `Notify` on drop (invariants 1
/// and 3). Shared by [`Writer`] and [`Reader`].
#[derive(Debug)]
struct Endpoint {
    handle: c::dds_entity_t,
    topic: c::dds_entity_t,
    wakes: *const Notify,
}

/// Which kind of endpoint an [`Endpoint`] is.
#[derive(Debug, Clone, Copy)]
enum Side {
    Reader,
    Writer,
}

unsafe fn wake(arg: *mut c_void) {
    // SAFETY: arg is the Notify pointer set at creation; invariant 3 keeps
    // it alive for every callback. Notify is Sync and notify_one never blocks.
    if let Some(notify) = unsafe { arg.cast::<Notify>().as_ref() } {
        notify.notify_one();
    }
}

unsafe extern "C" fn on_data_available(_reader: c::dds_entity_t, arg: *mut c_void) {
    // SAFETY: forwarded unchanged; see `wake`.
    unsafe { wake(arg) }
}

unsafe extern "C" fn on_publication_matched(
    _writer: c::dds_entity_t,
    _status: c::dds_publication_matched_status_t,
    arg: *mut c_void,
) {
    // SAFETY: forwarded unchanged; see `wake`.
    unsafe { wake(arg) }
}

impl Endpoint {
    fn new(
        side: Side,
        participant: &Participant,
        topic: &str,
        type_name: &str,
        qos: &Qos,
        wakes: Arc<Notify>,
    ) -> Result<Self, DdsError> {
        let operation = match side {
            Side::Reader => "create reader",
            Side::Writer => "create writer",
        };
        let topic = participant.blob_topic(topic, type_name)?;
        let wakes = Arc::into_raw(wakes);
        // SAFETY: the listener only stores the arg pointer, valid per invariant 3.
        let listener = unsafe { c::dds_create_listener(wakes.cast_mut().cast()) };
        let handle = if listener.is_null() {
            c::DDS_RETCODE_OUT_OF_RESOURCES
        } else {
            // SAFETY: participant, topic, qos and listener are live for the
            // calls; Cyclone copies the listener, so ours is deleted at once.
            unsafe {
                let h = match side {
                    Side::Reader => {
                        c::dds_lset_data_available(listener, Some(on_data_available));
                        c::dds_create_reader(participant.handle, topic, qos.0, listener)
                    }
                    Side::Writer => {
                        c::dds_lset_publication_matched(listener, Some(on_publication_matched));
                        c::dds_create_writer(participant.handle, topic, qos.0, listener)
                    }
                };
                c::dds_delete_listener(listener);
                h
            }
        };
        if let Err(e) = check(operation, handle) {
            // SAFETY: no entity was created, so no callback can use `wakes`;
            // the topic is ours and unused.
            unsafe {
                drop(Arc::from_raw(wakes));
                c::dds_delete(topic);
            }
            return Err(e);
        }
        Ok(Endpoint {
            handle,
            topic,
            wakes,
        })
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        // SAFETY: invariants 1 and 3: delete the entity (which waits for
        // running listener callbacks), then its topic, then reclaim the Arc.
        unsafe {
            c::dds_delete(self.handle);
            c::dds_delete(self.topic);
            drop(Arc::from_raw(self.wakes));
        }
    }
}

/// A writer of opaque CDR payloads on one topic. Its `Notify` is woken
/// whenever a reader matches or unmatches.
#[derive(Debug)]
pub struct Writer {
    endpoint: Endpoint,
    sertype: *const c::ddsi_sertype,
}

// SAFETY: Cyclone entity handles are plain integers usable from any thread;
// the sertype pointer is owned by Cyclone, lives as long as the writer
// (invariant 1) and is only read by Cyclone; the Notify is Send + Sync.
unsafe impl Send for Writer {}
// SAFETY: see Send; every Cyclone call used here is thread-safe.
unsafe impl Sync for Writer {}

impl Writer {
    pub fn new(
        participant: &Participant,
        topic: &str,
        type_name: &str,
        qos: &EndpointQos,
        user_data: &str,
        matched: Arc<Notify>,
    ) -> Result<Self, DdsError> {
        let qos = Qos::endpoint("create writer", qos, user_data)?;
        let endpoint = Endpoint::new(Side::Writer, participant, topic, type_name, &qos, matched)?;
        let mut sertype: *const c::ddsi_sertype = ptr::null();
        // SAFETY: the writer is live; sertype is a valid out pointer.
        check("get writer sertype", unsafe {
            c::dds_get_entity_sertype(endpoint.handle, &mut sertype)
        })?;
        Ok(Writer { endpoint, sertype })
    }

    /// Writes one sample. `payload` must start with the encapsulation header.
    pub fn write(&self, payload: &[u8]) -> Result<(), DdsError> {
        let iov = c::ddsrt_iovec_t {
            iov_base: payload.as_ptr().cast_mut().cast(),
            iov_len: payload.len(),
        };
        // SAFETY: sertype belongs to this live writer; the blob serdata copies
        // the bytes out of `iov` before returning (invariant 2).
        let serdata = unsafe {
            c::ddsi_serdata_from_ser_iov(
                self.sertype,
                c::ddsi_serdata_kind_SDK_DATA,
                1,
                &iov,
                payload.len(),
            )
        };
        if serdata.is_null() {
            return Err(DdsError::invalid("write", "could not build a sample"));
        }
        // SAFETY: dds_writecdr takes ownership of serdata whatever it returns.
        check("write", unsafe {
            c::dds_writecdr(self.endpoint.handle, serdata)
        })?;
        Ok(())
    }

    pub fn guid(&self) -> Result<[u8; 16], DdsError> {
        guid_of("get writer guid", self.endpoint.handle)
    }

    /// The writer's instance handle: rmw_cyclonedds uses it as the client id
    /// in service request headers.
    pub fn instance_handle(&self) -> Result<u64, DdsError> {
        instance_handle_of(self.endpoint.handle)
    }

    /// The user_data of every reader currently matched with this writer.
    pub fn matched_reader_user_data(&self) -> Vec<Vec<u8>> {
        matched_handles(self.endpoint.handle, c::dds_get_matched_subscriptions)
            .into_iter()
            // SAFETY: invariant 4; the pointer comes straight from Cyclone.
            .filter_map(|ih| unsafe {
                take_endpoint(c::dds_get_matched_subscription_data(
                    self.endpoint.handle,
                    ih,
                ))
            })
            .map(|ep| ep.user_data)
            .collect()
    }
}

/// One sample taken from a reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// The serialized payload, encapsulation header included.
    Sample {
        payload: Vec<u8>,
        publication_handle: u64,
    },
    /// A sample larger than the reader's limit, dropped without copying.
    Oversized {
        size: usize,
        publication_handle: u64,
    },
}

/// A reader of opaque CDR payloads that wakes a [`Notify`] on new data.
#[derive(Debug)]
pub struct Reader {
    endpoint: Endpoint,
    max_sample_size: usize,
}

// SAFETY: entity handles are thread-safe integers; the Notify is an Arc'd
// Send + Sync value that only Endpoint's Drop turns back into an Arc.
unsafe impl Send for Reader {}
// SAFETY: see Send.
unsafe impl Sync for Reader {}

impl Reader {
    pub fn new(
        participant: &Participant,
        topic: &str,
        type_name: &str,
        qos: &EndpointQos,
        user_data: &str,
        data_available: Arc<Notify>,
        max_sample_size: usize,
    ) -> Result<Self, DdsError> {
        let qos = Qos::endpoint("create reader", qos, user_data)?;
        let endpoint = Endpoint::new(
            Side::Reader,
            participant,
            topic,
            type_name,
            &qos,
            data_available,
        )?;
        Ok(Reader {
            endpoint,
            max_sample_size,
        })
    }

    pub fn guid(&self) -> Result<[u8; 16], DdsError> {
        guid_of("get reader guid", self.endpoint.handle)
    }

    /// Takes every sample available now (at most `limit`).
    pub fn take(&self, limit: usize) -> Vec<Taken> {
        let mut out = Vec::new();
        while out.len() < limit {
            let mut serdata: *mut c::ddsi_serdata = ptr::null_mut();
            let mut info = MaybeUninit::<c::dds_sample_info_t>::zeroed();
            // SAFETY: handle is live; one serdata slot and one info slot.
            let n = unsafe {
                c::dds_takecdr(
                    self.endpoint.handle,
                    &mut serdata,
                    1,
                    info.as_mut_ptr(),
                    c::DDS_ANY_STATE,
                )
            };
            if n <= 0 || serdata.is_null() {
                break;
            }
            // SAFETY: takecdr returned one sample, so info is filled in.
            let info = unsafe { info.assume_init() };
            if info.valid_data {
                // SAFETY: serdata is a live blob sample we own a reference to.
                let size = unsafe { c::ddsi_serdata_size(serdata) } as usize;
                if size > self.max_sample_size {
                    out.push(Taken::Oversized {
                        size,
                        publication_handle: info.publication_handle,
                    });
                } else {
                    let mut iov = c::ddsrt_iovec_t {
                        iov_base: ptr::null_mut(),
                        iov_len: 0,
                    };
                    // SAFETY: invariant 2: a valid-data blob serdata holds
                    // `size` bytes; we copy them before releasing the ref.
                    let payload = unsafe {
                        let r = c::ddsi_serdata_to_ser_ref(serdata, 0, size, &mut iov);
                        let bytes = if iov.iov_base.is_null() {
                            Vec::new()
                        } else {
                            std::slice::from_raw_parts(iov.iov_base.cast::<u8>(), iov.iov_len)
                                .to_vec()
                        };
                        c::ddsi_serdata_to_ser_unref(r, &iov);
                        bytes
                    };
                    out.push(Taken::Sample {
                        payload,
                        publication_handle: info.publication_handle,
                    });
                }
            }
            // SAFETY: release the reference dds_takecdr gave us.
            unsafe { c::ddsi_serdata_unref(serdata) };
        }
        out
    }

    /// The matched writer with this instance handle (None once it is gone).
    pub fn matched_writer(&self, publication_handle: u64) -> Option<MatchedEndpoint> {
        // SAFETY: invariant 4.
        unsafe {
            take_endpoint(c::dds_get_matched_publication_data(
                self.endpoint.handle,
                publication_handle,
            ))
        }
    }

    /// The user_data of the matched writer with this instance handle.
    pub fn matched_writer_user_data(&self, publication_handle: u64) -> Option<Vec<u8>> {
        self.matched_writer(publication_handle)
            .map(|ep| ep.user_data)
    }

    /// Instance handles of the writers matched with this reader now; a
    /// writer whose participant is gone (even killed) leaves this list.
    pub fn matched_writer_handles(&self) -> Vec<u64> {
        matched_handles(self.endpoint.handle, c::dds_get_matched_publications)
    }

    /// The user_data of every writer currently matched with this reader.
    pub fn matched_writers_user_data(&self) -> Vec<Vec<u8>> {
        matched_handles(self.endpoint.handle, c::dds_get_matched_publications)
            .into_iter()
            .filter_map(|ih| self.matched_writer_user_data(ih))
            .collect()
    }
}

/// A writer somewhere on the domain, as discovery (the builtin
/// `DCPSPublication` topic) describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredWriter {
    pub guid: [u8; 16],
    pub participant: [u8; 16],
    /// DDS topic name (`rt/ntari/dns/health`).
    pub topic: String,
    /// DDS type name (`std_msgs::msg::dds_::Bool_`).
    pub type_name: String,
    pub qos: EndpointQos,
    pub user_data: Vec<u8>,
}

/// What discovery reported about one writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriterEvent {
    Alive(DiscoveredWriter),
    /// The writer (or its whole participant) is gone.
    Gone([u8; 16]),
}

/// Reads the builtin `DCPSPublication` topic: every writer on the domain,
/// this participant's own included, as it appears and goes.
#[derive(Debug)]
pub struct PublicationWatcher {
    handle: c::dds_entity_t,
    wakes: *const Notify,
}

// SAFETY: as for Reader: an entity handle and an Arc'd Notify.
unsafe impl Send for PublicationWatcher {}
// SAFETY: see Send.
unsafe impl Sync for PublicationWatcher {}

impl PublicationWatcher {
    pub fn new(participant: &Participant, data_available: Arc<Notify>) -> Result<Self, DdsError> {
        let wakes = Arc::into_raw(data_available);
        // SAFETY: the listener only stores the arg pointer (invariant 3).
        let listener = unsafe { c::dds_create_listener(wakes.cast_mut().cast()) };
        let handle = if listener.is_null() {
            c::DDS_RETCODE_OUT_OF_RESOURCES
        } else {
            // SAFETY: participant and listener are live; the builtin topic
            // is a pseudo handle Cyclone resolves itself; Cyclone copies
            // the listener.
            unsafe {
                c::dds_lset_data_available(listener, Some(on_data_available));
                let h = c::dds_create_reader(
                    participant.handle,
                    c::DDS_BUILTIN_TOPIC_DCPSPUBLICATION,
                    ptr::null(),
                    listener,
                );
                c::dds_delete_listener(listener);
                h
            }
        };
        if let Err(e) = check("create publication reader", handle) {
            // SAFETY: no entity was created, so no callback can use `wakes`.
            unsafe { drop(Arc::from_raw(wakes)) };
            return Err(e);
        }
        Ok(PublicationWatcher { handle, wakes })
    }

    /// Takes what discovery learnt since the last call.
    pub fn take(&self) -> Vec<WriterEvent> {
        const BATCH: usize = 64;
        let mut out = Vec::new();
        loop {
            let mut samples: [*mut c_void; BATCH] = [ptr::null_mut(); BATCH];
            let mut infos = [MaybeUninit::<c::dds_sample_info_t>::zeroed(); BATCH];
            // SAFETY: null sample pointers ask Cyclone to loan its own
            // buffers; both arrays hold BATCH entries.
            let n = unsafe {
                c::dds_take(
                    self.handle,
                    samples.as_mut_ptr(),
                    infos.as_mut_ptr().cast(),
                    BATCH,
                    BATCH as u32,
                )
            };
            if n <= 0 {
                break;
            }
            let n = n as usize;
            for (sample, info) in samples.iter().zip(infos.iter()).take(n) {
                // SAFETY: dds_take filled the first n infos and samples; a
                // builtin publication sample is a dds_builtintopic_endpoint_t
                // whose key is set even for invalid (disposal) samples.
                let (info, ep) = unsafe {
                    (
                        info.assume_init_ref(),
                        &*(*sample).cast::<c::dds_builtintopic_endpoint_t>(),
                    )
                };
                let guid = ep.key.v;
                if !info.valid_data || info.instance_state != c::dds_instance_state_DDS_IST_ALIVE {
                    out.push(WriterEvent::Gone(guid));
                    continue;
                }
                // SAFETY: a valid sample has NUL-terminated topic and type
                // names and a qos owned by the loan (invariant 4: copied
                // out, never kept).
                let writer = unsafe {
                    DiscoveredWriter {
                        guid,
                        participant: ep.participant_key.v,
                        topic: c_str_or_empty(ep.topic_name),
                        type_name: c_str_or_empty(ep.type_name),
                        qos: endpoint_qos_of(ep.qos),
                        user_data: user_data_of(ep.qos),
                    }
                };
                out.push(WriterEvent::Alive(writer));
            }
            // SAFETY: returns exactly the loan dds_take handed out.
            unsafe {
                c::dds_return_loan(self.handle, samples.as_mut_ptr(), n as i32);
            }
            if n < BATCH {
                break;
            }
        }
        out
    }
}

impl Drop for PublicationWatcher {
    fn drop(&mut self) {
        // SAFETY: invariants 1 and 3: the reader is ours (its builtin topic
        // is not), delete it, then reclaim the Arc.
        unsafe {
            c::dds_delete(self.handle);
            drop(Arc::from_raw(self.wakes));
        }
    }
}

/// # Safety
/// `s` must be null or a NUL-terminated string valid for the call.
unsafe fn c_str_or_empty(s: *const std::ffi::c_char) -> String {
    if s.is_null() {
        String::new()
    } else {
        // SAFETY: per the function contract.
        unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned()
    }
}

/// # Safety
/// `qos` must be null or a live qos.
unsafe fn endpoint_qos_of(qos: *const c::dds_qos_t) -> EndpointQos {
    let mut reliability = c::dds_reliability_kind_DDS_RELIABILITY_BEST_EFFORT;
    let mut blocking: c::dds_duration_t = 0;
    let mut durability = c::dds_durability_kind_DDS_DURABILITY_VOLATILE;
    let mut history = c::dds_history_kind_DDS_HISTORY_KEEP_LAST;
    let mut depth: i32 = 1;
    if !qos.is_null() {
        // SAFETY: qos is live; every getter only writes its out pointers
        // and leaves them as they were when the policy is absent.
        unsafe {
            c::dds_qget_reliability(qos, &mut reliability, &mut blocking);
            c::dds_qget_durability(qos, &mut durability);
            c::dds_qget_history(qos, &mut history, &mut depth);
        }
    }
    EndpointQos {
        reliable: reliability == c::dds_reliability_kind_DDS_RELIABILITY_RELIABLE,
        transient_local: durability != c::dds_durability_kind_DDS_DURABILITY_VOLATILE,
        depth: if history == c::dds_history_kind_DDS_HISTORY_KEEP_ALL {
            0
        } else {
            u32::try_from(depth).unwrap_or(1)
        },
    }
}

/// # Safety
/// `qos` must be null or a live qos.
unsafe fn user_data_of(qos: *const c::dds_qos_t) -> Vec<u8> {
    if qos.is_null() {
        return Vec::new();
    }
    let mut value: *mut c_void = ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: qos is live; Cyclone allocates a copy we free below.
    unsafe {
        if c::dds_qget_userdata(qos, &mut value, &mut size) && !value.is_null() {
            let bytes = std::slice::from_raw_parts(value.cast::<u8>(), size).to_vec();
            c::dds_free(value);
            bytes
        } else {
            Vec::new()
        }
    }
}
