"""The standard services of every ROS node: read-only parameters and
``~/get_type_description``, over the rmw_cyclonedds wire.

What ``ros2 param list/get/describe/dump/set`` would do, done with
:class:`rosgraph.ParameterClient`: the example node shows its command line,
ntari-dns (real dnsmasq) the config it runs, which follows configure,
SIGHUP reloads and cleanup, with each change on ``/parameter_events``.
Every set is refused with a reason that says where the setting lives.
``~/get_type_description`` answers for the type of every topic the node
publishes (hashes read from the endpoints' discovery data) and refuses
unknown or malformed hashes as rcl does. tests/ros2 compares the served
descriptions with the ROS wheels' own.
"""

import signal
import time

import pytest

from helpers import wait_until
from ros_types import P, S, T, Parameter, ParameterValue
from test_dns_node import dns_node, dns_toml, public_dir, wait_resolves  # noqa: F401  (fixtures)
from test_example_node import NODE as EXAMPLE, start_node, example_bin  # noqa: F401  (fixtures)

DNS = "/ntari/ntari_dns_node"
STANDARD = {"use_sim_time": False, "start_type_description_service": True}
READY = 20.0


def param(name, value) -> Parameter:
    if isinstance(value, bool):
        v = ParameterValue(type=P.BOOL, bool_value=value)
    elif isinstance(value, int):
        v = ParameterValue(type=P.INTEGER, integer_value=value)
    else:
        v = ParameterValue(type=P.STRING, string_value=str(value))
    return Parameter(name=name, value=v)


def names(event_list):
    return sorted(p.name for p in event_list)


def wait_event(params, predicate, timeout=5.0, what="a parameter event"):
    return params.events.wait_for(lambda e: e.node == params.node and predicate(e),
                                  timeout=timeout, what=what)


# ---------------------------------------------------------------------------
# The example node: its command line, read-only
# ---------------------------------------------------------------------------

def test_example_node_shows_its_command_line(start_node, graph):
    start_node("--fail-on", "cleanup", "--error-on", "shutdown")
    params = graph.parameter_client(EXAMPLE)
    assert params.wait_ready(READY), "parameter services of the example never appeared"

    assert params.dump() == {**STANDARD, "autostart": False, "fail_on": ["cleanup"], "error_on": ["shutdown"]}
    listed = params.list()
    assert list(listed.names) == sorted(listed.names), "listed in name order"
    assert list(listed.prefixes) == []
    assert params.types(["autostart", "fail_on"]) == [P.BOOL, P.STRING_ARRAY]

    (desc,) = params.describe(["fail_on"])
    assert (desc.name, desc.type, desc.read_only) == ("fail_on", P.STRING_ARRAY, True)
    assert "command line" in desc.description

    # rclcpp answers nothing at all when one name is not declared.
    assert params.get(["autostart", "no_such"]) == []
    assert params.types(["no_such"]) == []
    assert params.describe(["no_such"]) == []

    results = params.set([param("autostart", True), param("no_such", 1)])
    assert [r.successful for r in results] == [False, False]
    assert "read-only" in results[0].reason and "command line" in results[0].reason
    assert "no such parameter" in results[1].reason
    atomic = params.set_atomically([param("fail_on", "x")])
    assert atomic.successful is False and "read-only" in atomic.reason
    assert params.dump()["autostart"] is False, "a refused set changes nothing"


# ---------------------------------------------------------------------------
# ntari-dns: the effective config, following the lifecycle and reloads
# ---------------------------------------------------------------------------

def test_dns_parameters_show_the_running_config(dns_node, graph):
    node = dns_node()   # no --autostart: Unconfigured, nothing loaded yet
    params = graph.parameter_client(DNS)
    assert params.wait_ready(READY), "parameter services of ntari-dns never appeared"
    assert params.dump() == STANDARD, "Unconfigured: no config is shown"

    assert node.lc.change_state(T.CONFIGURE) is True
    # (The server's first event, announcing the standard parameters, may
    # or may not reach us: it goes out as the server starts.)
    wait_event(params, lambda e: "port" in names(e.new_parameters), what="the config's parameters after configure")
    dump = params.dump()
    # What dns.toml says, and the defaults it does not mention.
    assert dump["port"] == node.port
    assert dump["domain"] == "coop.lan"
    assert dump["listen_addresses"] == ["127.0.0.1"]
    assert dump["hosts.0.name"] == "hub" and dump["hosts.0.addresses"] == ["192.168.50.1"]
    assert dump["wildcards.0.domain"] == "apps.coop.lan"
    assert dump["upstream_servers"] == [], "offline: an empty list"
    assert dump["negative_cache"] is True and dump["user"] == "dnsmasq"
    assert dump["use_sim_time"] is False
    assert params.list(["hosts"], depth=2).names == ["hosts.0.addresses", "hosts.0.name"]
    (desc,) = params.describe(["port"])
    assert str(node.config) in desc.description and desc.read_only is True

    result = params.set([param("port", 53)])[0]
    assert result.successful is False
    assert str(node.config) in result.reason and "reload" in result.reason, result.reason

    # A reload with a second host: new and changed parameters, one event.
    assert node.lc.change_state(T.ACTIVATE) is True
    node.config.write_text(dns_toml(node.port, hosts=(("hub", "192.168.50.9"), ("nas", "192.168.50.3"))))
    node.proc.send_signal(signal.SIGHUP)
    event = wait_event(params, lambda e: e.changed_parameters, what="the reload's event")
    assert names(event.changed_parameters) == ["hosts.0.addresses"]
    assert names(event.new_parameters) == ["hosts.1.addresses", "hosts.1.name"]
    assert params.dump()["hosts.1.name"] == "nas"
    wait_resolves(node.port, "nas.coop.lan", ["192.168.50.3"])

    # A config that fails validation: refused, parameters as they were.
    before = params.dump()
    node.config.write_text(dns_toml(node.port) + "\nport = 0\n")
    node.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "reload refused" in node.proc.stderr_path.read_text(errors="replace"), 5,
               "the refused reload in the node's log")
    assert params.dump() == before
    assert params.events.collect(0.5) == [], "a refused reload publishes no event"

    # Cleanup forgets the config: every config parameter is deleted.
    assert node.lc.change_state(T.DEACTIVATE) is True
    assert node.lc.change_state(T.CLEANUP) is True
    event = wait_event(params, lambda e: e.deleted_parameters, what="deleted parameters after cleanup")
    assert "port" in names(event.deleted_parameters)
    assert "use_sim_time" not in names(event.deleted_parameters)
    assert params.dump() == STANDARD
    assert node.lc.get_state().id == S.UNCONFIGURED


# ---------------------------------------------------------------------------
# ~/get_type_description
# ---------------------------------------------------------------------------

def type_hash(endpoint) -> str:
    for kv in endpoint.user_data.decode(errors="replace").split(";"):
        if kv.startswith("typehash="):
            return kv[len("typehash="):]
    raise AssertionError(f"no typehash in {endpoint.user_data!r}")


def ros_type(dds_type: str) -> str:
    """``pkg::msg::dds_::T_`` -> ``pkg/msg/T``."""
    pkg, kind, _, name = dds_type.split("::")
    return f"{pkg}/{kind}/{name[:-1]}"


def test_type_description_of_every_published_type(start_node, graph):
    start_node()
    client = graph.service_client(f"{EXAMPLE}/get_type_description",
                                  "type_description_interfaces/srv/GetTypeDescription")
    assert wait_until(client.is_ready, READY, "get_type_description to be available")
    node = wait_until(lambda: next((n for n in graph.nodes() if n.fqn == EXAMPLE and not n.unresolved), None),
                      READY, "the example node's endpoints in discovery")

    published = {ros_type(w.type_name): type_hash(w) for w in node.writers if w.topic.startswith("rt/")}
    assert {"std_msgs/msg/Bool", "lifecycle_msgs/msg/TransitionEvent",
            "rcl_interfaces/msg/ParameterEvent"} <= set(published), published
    for type_name, hash_ in published.items():
        reply = client.call(5.0, type_name=type_name, type_hash=hash_, include_type_sources=True)
        assert reply.successful, (type_name, reply.failure_reason)
        described = reply.type_description
        assert described.type_description.type_name == type_name
        nested = {f.type.nested_type_name for d in [described.type_description, *described.referenced_type_descriptions]
                  for f in d.fields if f.type.nested_type_name}
        assert nested <= {d.type_name for d in described.referenced_type_descriptions}, \
            f"{type_name}: every nested type is described"
        assert list(reply.type_sources) == [], "sources are not carried (documented)"

    unknown = client.call(5.0, type_name="std_msgs/msg/Bool", type_hash="RIHS01_" + "0" * 64)
    assert (unknown.successful, unknown.failure_reason) == (False, "Type not currently in use by this node")
    bad = client.call(5.0, type_name="std_msgs/msg/Bool", type_hash="RIHS01_xyz")
    assert (bad.successful, bad.failure_reason) == (False, "Failed to parse type hash")
    # It keeps answering after bad requests.
    again = client.call(5.0, type_name="", type_hash=published["std_msgs/msg/Bool"])
    assert again.successful and again.type_description.type_description.fields[0].name == "data"
