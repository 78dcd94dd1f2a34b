//! EtcdClient against real etcd processes (Debian etcd-server; see test_cluster).

use std::net::TcpListener;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use ipam_store_etcd::test_cluster::EtcdCluster;
use ipam_store_etcd::{EtcdClient, EtcdConfig, EtcdError, RangeRead};

fn cluster(members: usize) -> EtcdCluster {
    EtcdCluster::start(members).expect("start etcd (apt-get install etcd-server etcd-client)")
}

#[test]
fn crud_and_cas_semantics() {
    let etcd = cluster(1);
    let c = EtcdClient::connect(&etcd.config()).unwrap();
    let key = "/calico/ipam/v2/handle/k8s-pod-network.abc";

    assert_eq!(c.get(key).unwrap(), None);
    let r1 = c.create(key, br#"{"block":{},"deleted":false}"#).unwrap();
    assert!(r1 > 0);
    let got = c.get(key).unwrap().unwrap();
    assert_eq!(got.mod_revision, r1);
    assert_eq!(got.value, br#"{"block":{},"deleted":false}"#);

    // Create-if-absent refuses an existing key and leaves it untouched.
    assert!(matches!(c.create(key, b"x"), Err(EtcdError::Conflict(_))));
    assert_eq!(c.get(key).unwrap().unwrap().mod_revision, r1);

    // CAS update: right revision wins and bumps it; the stale one then conflicts.
    let r2 = c.update(key, b"v2", r1).unwrap();
    assert!(r2 > r1);
    assert!(matches!(
        c.update(key, b"v3", r1),
        Err(EtcdError::Conflict(_))
    ));
    assert_eq!(c.get(key).unwrap().unwrap().value, b"v2");
    assert!(matches!(
        c.update("/calico/absent", b"v", r2),
        Err(EtcdError::NotFound(_))
    ));
    // Revision 0 would turn the compare into "absent": must be rejected, not create the key.
    assert!(c.update("/calico/absent", b"v", 0).is_err());
    assert_eq!(c.get("/calico/absent").unwrap(), None);

    // Delete with a stale revision conflicts; with the current one it deletes.
    assert!(matches!(
        c.delete(key, Some(r1)),
        Err(EtcdError::Conflict(_))
    ));
    c.delete(key, Some(r2)).unwrap();
    assert_eq!(c.get(key).unwrap(), None);
    assert!(matches!(
        c.delete(key, Some(r2)),
        Err(EtcdError::NotFound(_))
    ));
    assert!(matches!(c.delete(key, None), Err(EtcdError::NotFound(_))));
    c.put(key, b"again").unwrap();
    c.delete(key, None).unwrap();
    assert_eq!(etcd.etcdctl_get(key).unwrap(), None);

    // Prefix listing returns exactly the keys under the prefix, in key order.
    for k in ["/p/b", "/p/a", "/p/c/d", "/q/a", "/p"] {
        c.put(k, k.as_bytes()).unwrap();
    }
    let listed: Vec<String> = c
        .list("/p/")
        .unwrap()
        .into_iter()
        .map(|kv| kv.key)
        .collect();
    assert_eq!(listed, vec!["/p/a", "/p/b", "/p/c/d"]);
    assert!(c.list("/nothing/").unwrap().is_empty());

    // The stock etcdctl sees our bytes verbatim.
    c.put("/calico/x", br#"{"a":1}"#).unwrap();
    assert_eq!(
        etcd.etcdctl_get("/calico/x").unwrap().unwrap(),
        br#"{"a":1}"#
    );
}

#[test]
fn only_one_of_racing_creators_wins() {
    let etcd = cluster(1);
    let cfg = etcd.config();
    let threads = 8;
    let barrier = Arc::new(Barrier::new(threads));
    let outcomes: Vec<bool> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let (cfg, barrier) = (&cfg, barrier.clone());
                s.spawn(move || {
                    let c = EtcdClient::connect(cfg).unwrap();
                    barrier.wait();
                    match c.create("/race", format!("{i}").as_bytes()) {
                        Ok(_) => true,
                        Err(EtcdError::Conflict(_)) => false,
                        Err(e) => panic!("unexpected {e}"),
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(outcomes.iter().filter(|w| **w).count(), 1, "{outcomes:?}");
    let winner = outcomes.iter().position(|w| *w).unwrap();
    assert_eq!(
        etcd.etcdctl_get("/race").unwrap().unwrap(),
        winner.to_string().into_bytes()
    );
}

#[test]
fn concurrent_cas_increments_lose_no_update() {
    let etcd = cluster(1);
    let cfg = etcd.config();
    let setup = EtcdClient::connect(&cfg).unwrap();
    setup.create("/counter", b"0").unwrap();
    let (threads, increments) = (6, 15);
    let conflicts: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let cfg = &cfg;
                s.spawn(move || {
                    let c = EtcdClient::connect(cfg).unwrap();
                    let mut conflicts = 0;
                    for _ in 0..increments {
                        loop {
                            let kv = c.get("/counter").unwrap().unwrap();
                            let n: u64 = String::from_utf8(kv.value).unwrap().parse().unwrap();
                            match c.update(
                                "/counter",
                                (n + 1).to_string().as_bytes(),
                                kv.mod_revision,
                            ) {
                                Ok(_) => break,
                                Err(EtcdError::Conflict(_)) => conflicts += 1,
                                Err(e) => panic!("unexpected {e}"),
                            }
                        }
                    }
                    conflicts
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let total = setup.get("/counter").unwrap().unwrap().value;
    assert_eq!(total, (threads * increments).to_string().into_bytes());
    eprintln!("{conflicts} CAS conflicts were retried");
}

#[test]
fn stale_writer_conflicts_deterministically() {
    let etcd = cluster(1);
    let a = EtcdClient::connect(&etcd.config()).unwrap();
    let b = EtcdClient::connect(&etcd.config()).unwrap();
    let rev = a.create("/block", b"v0").unwrap();
    // Both read the same revision; the first writer wins, the second must conflict.
    let seen_a = a.get("/block").unwrap().unwrap();
    let seen_b = b.get("/block").unwrap().unwrap();
    assert_eq!((seen_a.mod_revision, seen_b.mod_revision), (rev, rev));
    a.update("/block", b"from-a", seen_a.mod_revision).unwrap();
    assert!(matches!(
        b.update("/block", b"from-b", seen_b.mod_revision),
        Err(EtcdError::Conflict(_))
    ));
    assert_eq!(etcd.etcdctl_get("/block").unwrap().unwrap(), b"from-a");
}

#[test]
fn mutual_tls_with_generated_certificates() {
    let etcd = EtcdCluster::start_tls(1).expect("start TLS etcd");
    let tls = etcd.tls().unwrap().clone();
    assert!(etcd.endpoint(0).starts_with("https://"));

    let c = EtcdClient::connect(&etcd.config()).unwrap();
    let rev = c.create("/calico/tls", b"ok").unwrap();
    assert_eq!(c.get("/calico/tls").unwrap().unwrap().mod_revision, rev);
    assert_eq!(etcd.etcdctl_get("/calico/tls").unwrap().unwrap(), b"ok");

    let short = |mut cfg: EtcdConfig| {
        cfg.timeout = Duration::from_secs(1);
        cfg
    };
    // No client certificate: etcd (--client-cert-auth) refuses the handshake.
    let mut no_cert = short(etcd.config());
    no_cert.cert_file = None;
    no_cert.key_file = None;
    let c = EtcdClient::connect(&no_cert).unwrap();
    let start = Instant::now();
    let err = c.get("/calico/tls").unwrap_err();
    eprintln!("without client cert: {err}");
    assert!(err.is_unavailable(), "{err}");
    assert!(start.elapsed() < Duration::from_secs(3));

    // A client certificate from another CA is refused too.
    let mut foreign = short(etcd.config());
    foreign.cert_file = Some(tls.foreign_client_cert.clone());
    foreign.key_file = Some(tls.foreign_client_key.clone());
    let err = EtcdClient::connect(&foreign)
        .unwrap()
        .get("/calico/tls")
        .unwrap_err();
    eprintln!("foreign client cert: {err}");
    assert!(err.is_unavailable(), "{err}");

    // Without our CA the server certificate is not trusted (system roots only).
    let mut no_ca = short(etcd.config());
    no_ca.ca_cert_file = None;
    let err = EtcdClient::connect(&no_ca)
        .unwrap()
        .get("/calico/tls")
        .unwrap_err();
    eprintln!("without CA: {err}");
    assert!(err.is_unavailable(), "{err}");

    // Plain http to the https port does not work either.
    let http = short(EtcdConfig::with_endpoints(
        &etcd.endpoint(0).replace("https://", "http://"),
    ));
    assert!(EtcdClient::connect(&http)
        .unwrap()
        .get("/calico/tls")
        .is_err());

    // Unreadable key file: configuration error before any network traffic.
    let mut missing = etcd.config();
    missing.key_file = Some("/nonexistent/key.pem".into());
    assert!(matches!(
        EtcdClient::connect(&missing),
        Err(EtcdError::Config(_))
    ));
}

#[test]
fn three_members_survive_one_killed() {
    let mut etcd = cluster(3);
    let c = EtcdClient::connect(&etcd.config()).unwrap();
    let rev = c.create("/calico/ha", b"0").unwrap();
    let start = Instant::now();
    for i in 1..=20 {
        c.put(&format!("/calico/warm-{i}"), b"x").unwrap();
        c.get(&format!("/calico/warm-{i}")).unwrap();
    }
    eprintln!("20 rounds before the kill took {:?}", start.elapsed());
    etcd.kill_member(0).unwrap();
    assert!(!etcd.is_running(0));

    // The same client keeps working: reads, CAS writes and creates all succeed.
    let mut rev = rev;
    let start = Instant::now();
    for i in 1..=20 {
        let kv = c.get("/calico/ha").unwrap().unwrap();
        assert_eq!(kv.mod_revision, rev);
        rev = c
            .update("/calico/ha", i.to_string().as_bytes(), rev)
            .unwrap();
        c.create(&format!("/calico/ha-{i}"), b"x").unwrap();
    }
    let took = start.elapsed();
    eprintln!("20 rounds after the kill took {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(c.list("/calico/ha-").unwrap().len(), 20);

    // A fresh client whose first endpoint is the dead member also works.
    let c2 = EtcdClient::connect(&etcd.config()).unwrap();
    assert_eq!(c2.get("/calico/ha").unwrap().unwrap().value, b"20");
    c2.update("/calico/ha", b"21", rev).unwrap();

    // Losing quorum (2 of 3 down) turns into Unavailable within the timeout, not a hang.
    etcd.kill_member(1).unwrap();
    let mut cfg = etcd.config();
    cfg.timeout = Duration::from_secs(2);
    let c3 = EtcdClient::connect(&cfg).unwrap();
    let start = Instant::now();
    let err = c3.create("/calico/no-quorum", b"x").unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn unreachable_endpoint_is_unavailable_quickly() {
    // A port nobody listens on (connection refused).
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = EtcdConfig::with_endpoints(&format!("http://127.0.0.1:{port}"));
    cfg.timeout = Duration::from_millis(800);
    let c = EtcdClient::connect(&cfg).unwrap();
    for op in 0..3 {
        let start = Instant::now();
        let err = match op {
            0 => c.get("/k").unwrap_err(),
            1 => c.create("/k", b"v").unwrap_err(),
            _ => c.list("/").unwrap_err(),
        };
        let took = start.elapsed();
        assert!(err.is_unavailable(), "{err}");
        assert!(took < Duration::from_secs(2), "op {op} took {took:?}");
    }

    // A listener that accepts TCP but never speaks HTTP/2: bounded by the timeout too.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cfg = EtcdConfig::with_endpoints(&format!("http://{}", silent.local_addr().unwrap()));
    cfg.timeout = Duration::from_millis(800);
    let c = EtcdClient::connect(&cfg).unwrap();
    let start = Instant::now();
    let err = c.get("/k").unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn no_endpoints_is_a_config_error() {
    let err = EtcdClient::connect(&EtcdConfig::default()).unwrap_err();
    assert!(matches!(err, EtcdError::Config(_)), "{err}");
}

#[test]
fn silent_member_does_not_block_a_live_one() {
    let etcd = cluster(1);
    // Accepts TCP (kernel backlog) but never answers: a hung or partitioned member.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cfg = etcd.config();
    cfg.endpoints
        .insert(0, format!("http://{}", silent.local_addr().unwrap()));
    cfg.timeout = Duration::from_secs(4);
    let c = EtcdClient::connect(&cfg).unwrap();
    let start = Instant::now();
    for i in 0..10 {
        c.create(&format!("/silent/{i}"), b"x").unwrap();
        assert!(c.get(&format!("/silent/{i}")).unwrap().is_some());
    }
    let took = start.elapsed();
    eprintln!("20 ops with a silent member took {took:?}");
    // Only the first request may wait for the silent member (one 2 s attempt); later ones
    // stick to the live member. Without failover this is ~10 x 2 s or an error.
    assert!(took < Duration::from_secs(6), "{took:?}");
    assert_eq!(c.list("/silent/").unwrap().len(), 10);
}

/// A TCP proxy to `upstream` that forwards requests at once but holds every answer back for
/// `delay`: the request is applied by etcd, the client gives up on this member before it hears
/// so, and retries on the next one. That is a write whose answer was lost.
fn answer_delaying_proxy(upstream: std::net::SocketAddr, delay: Duration) -> String {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(upstream) else {
                return;
            };
            let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c_in, &mut s_out);
            });
            let (mut s_in, mut c_out) = (server, client);
            std::thread::spawn(move || {
                let mut buf = [0u8; 16384];
                while let Ok(n) = s_in.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    std::thread::sleep(delay);
                    if c_out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

#[test]
fn a_write_whose_answer_was_lost_is_recognised_not_repeated() {
    let etcd = cluster(1);
    let direct = etcd.endpoint(0).to_string();
    let upstream: std::net::SocketAddr = direct.trim_start_matches("http://").parse().unwrap();
    let proxy = answer_delaying_proxy(upstream, Duration::from_secs(3));
    // The proxy first: every write is applied through it, then retried directly.
    let cfg = EtcdConfig {
        timeout: Duration::from_secs(2),
        ..EtcdConfig::with_endpoints(&format!("{proxy},{direct}"))
    };
    let c = EtcdClient::connect(&cfg).unwrap();
    let plain = EtcdClient::connect(&etcd.config()).unwrap();
    let key = "/calico/ipam/v2/assignment/ipv4/block/10.244.0.0-26";

    let r1 = c.create(key, b"v1").unwrap();
    assert_eq!(plain.get(key).unwrap().unwrap().mod_revision, r1);
    // The client now prefers the direct member; make the proxy first again for each write.
    let c = EtcdClient::connect(&cfg).unwrap();
    let r2 = c.update(key, b"v2", r1).unwrap();
    let now = plain.get(key).unwrap().unwrap();
    assert_eq!((now.value.as_slice(), now.mod_revision), (&b"v2"[..], r2));
    let c = EtcdClient::connect(&cfg).unwrap();
    c.delete(key, Some(r2)).unwrap();
    assert_eq!(plain.get(key).unwrap(), None);

    // A different value still conflicts after a retry: only our own write is recognised.
    plain.create(key, b"theirs").unwrap();
    let c = EtcdClient::connect(&cfg).unwrap();
    assert!(matches!(
        c.create(key, b"ours"),
        Err(EtcdError::Conflict(_))
    ));
}

/// `ETCD_USERNAME` / `ETCD_PASSWORD`: against an etcd with authentication enabled (root user
/// and role, as `etcdctl user add root; etcdctl auth enable` leave it), the right credentials
/// read and write, wrong or missing ones are refused (not "unavailable"), and a member that
/// is down at first use fails over to the next one instead of failing the connect.
#[test]
fn user_authentication() {
    let etcd = cluster(1);
    let ep = etcd.endpoint(0).to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut admin = etcd_client::Client::connect([&ep], None).await.unwrap();
        admin.user_add("root", "s3cret", None).await.unwrap();
        admin.user_grant_role("root", "root").await.unwrap();
        admin.auth_enable().await.unwrap();
    });
    let with = |user: Option<&str>, password: &str, endpoints: &str| EtcdConfig {
        username: user.map(String::from),
        password: Some(password.to_string()),
        timeout: Duration::from_secs(3),
        ..EtcdConfig::with_endpoints(endpoints)
    };
    let key = "/calico/ipam/v2/handle/k8s-pod-network.auth";

    let c = EtcdClient::connect(&with(Some("root"), "s3cret", &ep)).unwrap();
    let rev = c.create(key, b"v1").unwrap();
    assert_eq!(c.get(key).unwrap().unwrap().mod_revision, rev);
    assert!(
        !format!("{:?}", with(Some("root"), "s3cret", &ep)).contains("s3cret"),
        "password kept out of logs"
    );

    for (user, password) in [(Some("root"), "wrong"), (None, "")] {
        let started = Instant::now();
        let c = EtcdClient::connect(&with(user, password, &ep)).unwrap();
        match c.get(key) {
            Err(e) => assert!(!e.is_unavailable(), "{user:?}: {e}"),
            Ok(v) => panic!("{user:?}/{password}: read {v:?} without valid credentials"),
        }
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    // The first endpoint refuses connections: authentication happens on the member that
    // answers.
    let refused = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let both = format!("http://{refused},{ep}");
    let c = EtcdClient::connect(&with(Some("root"), "s3cret", &both)).unwrap();
    assert_eq!(c.get(key).unwrap().unwrap().value, b"v1");
}

/// A list larger than gRPC's 4 MiB message limit (a large cluster's blocks or handles) comes
/// back whole, in key order, and stops at the prefix (a key just past it is not included).
#[test]
fn lists_larger_than_one_grpc_message() {
    let etcd = cluster(1);
    let c = EtcdClient::connect(&etcd.config()).unwrap();
    // 1,200 keys: more than two pages of the client's list, 12 MiB in all.
    let value = vec![b'x'; 10 * 1024];
    for i in 0..1200 {
        c.create(&format!("/calico/ipam/v2/handle/h{i:04}"), &value)
            .unwrap();
    }
    c.create("/calico/ipam/v2/handle0", b"past the prefix")
        .unwrap();
    let all = c.list("/calico/ipam/v2/handle/").unwrap();
    assert_eq!(all.len(), 1200, "12 MiB of values in one list");
    let keys: Vec<&str> = all.iter().map(|kv| kv.key.as_str()).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert_eq!(keys[1199], "/calico/ipam/v2/handle/h1199");
}

/// A list that takes longer than one operation's timeout still completes: each page has its
/// own timeout (a 5,000-node cluster's 103,360 handles did not fit in one). The plugin call's
/// deadline still bounds the whole list.
#[test]
fn list_longer_than_one_operation_timeout() {
    let etcd = cluster(1);
    let c = EtcdClient::connect(&etcd.config()).unwrap();
    for i in 0..2000 {
        c.put(&format!("/calico/ipam/v2/handle/h{i:04}"), b"{}")
            .unwrap();
    }
    let mut cfg = etcd.config();
    cfg.timeout = Duration::from_millis(300);
    // One key per page: 2,000 round trips, far longer than the 300 ms timeout of one.
    let slow = EtcdClient::connect(&cfg).unwrap().with_list_page(1);
    let t = Instant::now();
    let all = slow.list("/calico/ipam/v2/handle/").unwrap();
    let took = t.elapsed();
    assert_eq!(all.len(), 2000);
    assert_eq!(all[1999].key, "/calico/ipam/v2/handle/h1999");
    assert!(
        took > cfg.timeout,
        "the list took {took:?}, within one timeout: this test proves nothing"
    );

    let bounded = EtcdClient::connect(&cfg)
        .unwrap()
        .with_list_page(1)
        .with_deadline(Instant::now() + Duration::from_millis(100));
    let t = Instant::now();
    let e = bounded.list("/calico/ipam/v2/handle/").unwrap_err();
    assert!(e.is_unavailable(), "{e}");
    assert!(
        t.elapsed() < Duration::from_millis(400),
        "deadline ignored: {:?}",
        t.elapsed()
    );
}

/// `read_many` answers gets and prefix lists in order; a prefix with more keys than one list
/// page holds is completed by the paged list (all its keys, in order, none past the prefix).
#[test]
fn read_many_completes_a_prefix_longer_than_a_page() {
    let etcd = cluster(1);
    let c = EtcdClient::connect(&etcd.config())
        .unwrap()
        .with_list_page(3);
    for i in (0..7).rev() {
        c.put(&format!("/calico/ipam/v2/handle/h{i}"), b"{}")
            .unwrap();
    }
    c.put("/calico/ipam/v2/handle0", b"past the prefix")
        .unwrap();
    c.put("/calico/ipam/v2/host/n1/ipv4/block/10.0.0.0-26", b"a")
        .unwrap();
    let got = c
        .read_many(&[
            RangeRead::Get("/calico/ipam/v2/absent"),
            RangeRead::Prefix("/calico/ipam/v2/handle/"),
            RangeRead::Get("/calico/ipam/v2/handle0"),
            RangeRead::Prefix("/calico/ipam/v2/host/n1/"),
            RangeRead::Prefix("/calico/ipam/v2/host/n2/"),
        ])
        .unwrap();
    let keys = |i: usize| -> Vec<&str> { got[i].iter().map(|kv| kv.key.as_str()).collect() };
    assert_eq!(got.len(), 5);
    assert!(got[0].is_empty(), "absent key");
    assert_eq!(
        keys(1),
        (0..7)
            .map(|i| format!("/calico/ipam/v2/handle/h{i}"))
            .collect::<Vec<_>>(),
        "7 keys with 3 per page"
    );
    assert_eq!(keys(2), vec!["/calico/ipam/v2/handle0"]);
    assert_eq!(got[2][0].value, b"past the prefix");
    assert_eq!(
        keys(3),
        vec!["/calico/ipam/v2/host/n1/ipv4/block/10.0.0.0-26"]
    );
    assert!(got[4].is_empty(), "empty prefix");
}

/// More reads than etcd takes in one Txn (128 by default) are all answered, in order: a
/// release of a handle with many blocks, or any batch grown past the limit, must not be
/// refused whole with "too many operations in txn request".
#[test]
fn read_many_answers_more_reads_than_one_txn_takes() {
    let etcd = cluster(1);
    let c = EtcdClient::connect(&etcd.config()).unwrap();
    let keys: Vec<String> = (0..300)
        .map(|i| format!("/calico/ipam/v2/handle/h{i:03}"))
        .collect();
    for k in keys.iter().step_by(2) {
        c.put(k, k.as_bytes()).unwrap();
    }
    let reads: Vec<RangeRead> = keys.iter().map(|k| RangeRead::Get(k)).collect();
    let got = c.read_many(&reads).unwrap();
    assert_eq!(got.len(), 300);
    for (i, (k, kvs)) in keys.iter().zip(&got).enumerate() {
        if i % 2 == 0 {
            assert_eq!(kvs.len(), 1, "{k}");
            assert_eq!(kvs[0].value, k.as_bytes(), "{k}");
        } else {
            assert!(kvs.is_empty(), "{k} was never written");
        }
    }
}
