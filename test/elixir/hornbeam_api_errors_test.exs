defmodule Hornbeam.ApiErrorsTest do
  # Bad arguments to the Elixir API are {:error, reason} here and never
  # crash the relay or a presence shard. Starts and stops the endpoint.
  use ExUnit.Case, async: false

  setup do
    :ok = Hornbeam.start(:none, %{bind: "127.0.0.1:0"})
    on_exit(fn -> Hornbeam.stop() end)
    %{relay: Process.whereis(:hornbeam_pubsub), shard: :hornbeam_presence_shard.whereis_shard(0)}
  end

  test "broadcast with an atom event, an atom topic or a non-JSON payload is an error", %{relay: relay} do
    assert {:error, {:bad_event, :new_msg}} = Hornbeam.broadcast("room:lobby", :new_msg, %{})
    assert {:error, {:bad_topic, :room}} = Hornbeam.broadcast(:room, "new_msg", %{})
    assert {:error, {:bad_topic, <<255>>}} = Hornbeam.local_broadcast(<<255>>, "new_msg", %{})
    assert {:error, {:not_json, _}} = Hornbeam.broadcast("room:lobby", "new_msg", %{"pid" => self()})
    assert {:error, {:bad_from, :me}} = Hornbeam.broadcast_from(:me, "room:lobby", "new_msg", %{})
    assert Process.whereis(:hornbeam_pubsub) == relay
    assert :ok = Hornbeam.broadcast("room:lobby", "new_msg", %{"body" => "still fine"})
  end

  test "presence with a bad owner, topic, key or meta is an error", %{shard: shard} do
    assert {:error, {:bad_owner, :me}} = Hornbeam.Presence.track(:me, "room:lobby", "user:1", %{})
    assert {:error, {:bad_topic, :room}} = Hornbeam.Presence.track(self(), :room, "user:1", %{})
    assert {:error, {:bad_key, 1}} = Hornbeam.Presence.update(self(), "room:lobby", 1, %{})
    assert {:error, :meta_must_be_a_map} = Hornbeam.Presence.track(self(), "room:lobby", "user:1", "online")
    assert {:error, :meta_not_json} = Hornbeam.Presence.track(self(), "room:lobby", "user:1", %{a: self()})
    assert {:error, {:bad_topic, :room}} = Hornbeam.Presence.untrack(self(), :room, "user:1")
    assert {:error, {:bad_topic, :room}} = Hornbeam.Presence.list(:room)
    assert {:error, {:bad_key, :ana}} = Hornbeam.Presence.get("room:lobby", :ana)
    assert :hornbeam_presence_shard.whereis_shard(0) == shard
    assert :ok = Hornbeam.Presence.track(self(), "room:lobby", "user:1", %{"status" => "online"})
    assert %{"user:1" => %{"metas" => [%{"status" => "online"}]}} = Hornbeam.Presence.list("room:lobby")
  end
end
