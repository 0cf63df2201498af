use super::*;

fn fixture() -> (Value, Value) {
    let c = serde_json::from_str(include_str!("testdata/docker-20.10-inspect.json")).unwrap();
    let i = serde_json::from_str(include_str!("testdata/docker-20.10-image.json")).unwrap();
    (c, i)
}

fn no_peers(id: &str) -> anyhow::Result<String> {
    panic!("no peer expected, asked for {id}")
}

#[test]
fn a_docker_container_is_described_in_lifeboats_terms() {
    // `docker run -d --name lbprobe -v probevol:/data -e A=1 --restart unless-stopped
    // --memory 64m --health-cmd true --health-interval 5s --tmpfs /run:size=1m base:1 sleep 1000`
    let (c, i) = fixture();
    let got = translate(&c, &i, &no_peers).unwrap();
    let r = &got.config;
    assert_eq!(r.name, "lbprobe");
    assert_eq!(r.id, got.id);
    assert_eq!(r.args, ["sleep", "1000"]);
    assert_eq!(r.image, "base:1");
    assert_eq!(r.layers.len(), i["RootFS"]["Layers"].as_array().unwrap().len());
    assert!(r.env.contains(&"A=1".to_string()), "{:?}", r.env);
    assert_eq!(r.restart, RestartPolicy::UnlessStopped);
    assert_eq!(r.memory, Some(64 << 20));
    assert_eq!(r.network, NetworkMode::Private);
    assert_eq!(r.working_dir, "/");
    assert_eq!(r.user, None);
    let health = r.health.as_ref().unwrap();
    assert_eq!((health.command.as_str(), health.interval_secs, health.retries), ("true", 5, 3));
    assert_eq!(got.volumes.len(), 1);
    let (name, target, data) = &got.volumes[0];
    assert_eq!((name.as_str(), target.as_str()), ("probevol", "/data"));
    assert!(data.ends_with("volumes/probevol/_data"));
    assert!(r.mounts.iter().any(|m| m.target == "/run"
        && matches!(m.source, MountSource::Tmpfs { size: Some(s), .. } if s == 1 << 20)));
    assert!(got.upper.ends_with("diff"), "{}", got.upper.display());
    assert!(got.running && !got.paused);
    assert!(got.not_kept.is_empty(), "{:?}", got.not_kept);
}

#[test]
fn a_network_peer_is_recorded_by_name_and_other_modes_as_they_are() {
    let (mut c, i) = fixture();
    c["HostConfig"]["NetworkMode"] = json!("container:0123abcd");
    let peer = |id: &str| -> anyhow::Result<String> {
        assert_eq!(id, "0123abcd");
        Ok("db".into())
    };
    assert_eq!(translate(&c, &i, &peer).unwrap().config.network, NetworkMode::Container("db".into()));
    for (mode, want) in [
        ("host", NetworkMode::Host),
        ("none", NetworkMode::None),
        ("bridge", NetworkMode::Private),
        ("shop_default", NetworkMode::Network("shop_default".into())),
    ] {
        c["HostConfig"]["NetworkMode"] = json!(mode);
        assert_eq!(translate(&c, &i, &no_peers).unwrap().config.network, want, "{mode}");
    }
}

#[test]
fn ports_restart_limits_and_what_is_not_kept() {
    let (mut c, i) = fixture();
    c["HostConfig"]["PortBindings"] =
        json!({"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}], "53/udp": [{"HostIp": "", "HostPort": ""}]});
    c["HostConfig"]["RestartPolicy"] = json!({"Name": "on-failure", "MaximumRetryCount": 4});
    c["HostConfig"]["NanoCpus"] = json!(1_500_000_000u64);
    c["HostConfig"]["Privileged"] = json!(true);
    c["HostConfig"]["CapAdd"] = json!(["NET_ADMIN"]);
    c["Config"]["User"] = json!("mysql");
    c["Config"]["WorkingDir"] = json!("/srv");
    let got = translate(&c, &i, &no_peers).unwrap();
    let r = &got.config;
    let mut ports: Vec<_> =
        r.ports.iter().map(|p| (p.host_ip.as_str(), p.host_port, p.container_port, p.protocol.clone())).collect();
    ports.sort_by_key(|p| p.2);
    assert_eq!(ports, [("", 0, 53, Protocol::Udp), ("127.0.0.1", 8080, 80, Protocol::Tcp)]);
    assert_eq!(r.restart, RestartPolicy::OnFailure { max_retries: Some(4) });
    assert_eq!(r.cpus, Some(1.5));
    assert_eq!((r.user.as_deref(), r.working_dir.as_str()), (Some("mysql"), "/srv"));
    assert_eq!(got.not_kept.len(), 2, "{:?}", got.not_kept);
}

#[test]
fn descriptions_lifeboat_cannot_use_are_refused_not_guessed() {
    let (mut c, i) = fixture();
    c["GraphDriver"]["Name"] = json!("vfs");
    let e = translate(&c, &i, &no_peers).unwrap_err().to_string();
    assert!(e.contains("vfs") && e.contains("overlay"), "{e}");
    let (mut c, i) = fixture();
    c["Mounts"][0]["Driver"] = json!("nfs-plugin");
    assert!(translate(&c, &i, &no_peers).unwrap_err().to_string().contains("only local volumes"));
    let (mut c, i) = fixture();
    c["Id"] = json!("../../etc");
    assert!(translate(&c, &i, &no_peers).is_err());
    // Whatever shape the answer has, no panic.
    for broken in [json!(null), json!([]), json!({"Id": 5}), json!({"Config": "x"})] {
        assert!(translate(&broken, &i, &no_peers).is_err());
    }
}

#[test]
fn targets_are_read_strictly() {
    assert_eq!(Target::parse("web"), None);
    assert_eq!(Target::parse("docker://web").unwrap().unwrap(), Target::Container(Kind::Docker, "web".into()));
    assert_eq!(
        Target::parse("podman://shop/db").unwrap().unwrap(),
        Target::Service { kind: Kind::Podman, project: "shop".into(), service: "db".into() }
    );
    assert_eq!(Target::parse("docker://shop/*").unwrap().unwrap(), Target::Project(Kind::Docker, "shop".into()));
    for bad in ["docker://", "docker://a/b/c", "docker://../x", "docker://a b", "docker:///x"] {
        assert!(Target::parse(bad).unwrap().is_err(), "{bad}");
    }
}

#[test]
fn a_podman_container_is_described_as_well() {
    // `podman run -d --name p1 -v pv:/data localhost/base:1 sh -c '…'` (Podman 4.3, its
    // Docker-compatible API; no network: netns="none").
    let c: Value = serde_json::from_str(include_str!("testdata/podman-4-inspect.json")).unwrap();
    let i = json!({"RootFS": {"Layers": ["sha256:cf73ec1c03175b96bddabdcf27433d609a6a630cc79efec4c68d11b16143d4c8"]}});
    let got = translate(&c, &i, &no_peers).unwrap();
    assert_eq!(got.config.name, "p1");
    assert_eq!(got.config.image, "localhost/base:1");
    assert_eq!(got.config.args[..2], ["sh".to_string(), "-c".to_string()]);
    assert_eq!(got.config.network, NetworkMode::None);
    assert_eq!(got.config.restart, RestartPolicy::No);
    assert_eq!(got.volumes.len(), 1);
    assert_eq!(got.volumes[0].0, "pv");
    assert!(got.upper.ends_with("diff"));
    assert!(got.running);
}

#[test]
fn the_create_request_says_what_docker_needs_and_nothing_it_refuses() {
    let (c, i) = fixture();
    let mut r = translate(&c, &i, &no_peers).unwrap().config;
    r.mounts.push(MountSpec {
        source: MountSource::Volume { name: "cache".into() },
        target: "/cache".into(),
        read_only: true,
        nocopy: true,
        anonymous: false,
    });
    r.mounts.push(MountSpec {
        source: MountSource::Volume { name: "spool".into() },
        target: "/spool".into(),
        read_only: false,
        nocopy: true,
        anonymous: false,
    });
    r.ports.push(PortMapping { host_ip: String::new(), host_port: 8080, container_port: 80, protocol: Protocol::Tcp });
    r.extra_hosts = vec!["db:127.0.0.1".into()];
    let body = create_body(&r);
    assert_eq!(body["HostConfig"]["Binds"], json!(["probevol:/data", "cache:/cache:ro,nocopy", "spool:/spool:nocopy"]));
    assert_eq!(body["HostConfig"]["Tmpfs"]["/run"], "size=1048576");
    // The old container's ID as its host name: Docker makes a new one.
    assert_eq!(body["Hostname"], "");
    assert_eq!(body["HostConfig"]["PortBindings"]["80/tcp"][0]["HostPort"], "8080");
    assert_eq!(body["Entrypoint"], json!(["sleep", "1000"]));
    assert_eq!(body["Cmd"], Value::Null);

    // Sharing another's network: no name, ports or hosts entries of its own.
    r.network = NetworkMode::Container("db".into());
    r.hostname = "web".into();
    let body = create_body(&r);
    assert_eq!(body["HostConfig"]["NetworkMode"], "container:db");
    assert_eq!(
        (body["Hostname"].as_str(), body["HostConfig"]["PortBindings"].as_object().map(|o| o.len())),
        (Some(""), Some(0))
    );
    assert_eq!(body["ExposedPorts"], json!({}));
    assert_eq!(body["HostConfig"]["ExtraHosts"], json!([]));

    // No health check: none at all, not the image's.
    r.health = None;
    assert_eq!(create_body(&r)["Healthcheck"], json!({"Test": ["NONE"]}));
    // A Compose service keeps its service name on its project's network.
    r.network = NetworkMode::Network("blog_default".into());
    r.labels.insert("com.docker.compose.service".into(), "db".into());
    let body = create_body(&r);
    assert_eq!(body["NetworkingConfig"]["EndpointsConfig"]["blog_default"]["Aliases"], json!(["db"]));
}

#[test]
fn podman_s_init_and_unusual_settings_are_read_as_such() {
    let (mut c, i) = fixture();
    c["Path"] = json!("/run/podman-init");
    c["Args"] = json!(["--", "sleep", "5"]);
    c["HostConfig"]["ShmSize"] = json!(1u64 << 30);
    c["HostConfig"]["PortBindings"] = json!({"9/sctp": [{"HostIp": "", "HostPort": "9"}]});
    c["Mounts"] = json!([{"Type": "tmpfs", "Destination": "/cache", "TmpfsOptions": {"SizeBytes": 4096, "Mode": 448}, "RW": true}]);
    c["Name"] = json!("/../../etc");
    assert!(translate(&c, &i, &no_peers).is_err(), "a name that is no container name");
    c["Name"] = json!("/web");
    let got = translate(&c, &i, &no_peers).unwrap();
    assert_eq!(got.config.args, ["sleep", "5"]);
    assert!(got.config.ports.is_empty());
    assert_eq!(got.not_kept.len(), 2, "{:?}", got.not_kept);
    assert!(
        got.config.mounts.iter().any(|m| m.target == "/cache"
            && m.source == MountSource::Tmpfs { size: Some(4096), mode: Some(0o700), exec: false })
    );
}
