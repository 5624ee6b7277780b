defmodule Hornbeam.ChannelsTest do
  # One endpoint per node: these tests start and stop it, so they run alone.
  use ExUnit.Case, async: false

  alias Hornbeam.Test.{RoomChannel, WsClient}

  setup do
    :ok = Hornbeam.start(:none, %{bind: "127.0.0.1:0", channels: [{"room:*", RoomChannel}]})
    on_exit(fn -> Hornbeam.stop() end)
    %{port: Hornbeam.port()}
  end

  test "an Elixir channel module joins, replies and receives broadcasts", %{port: port} do
    {:ok, c} = WsClient.connect(port)

    assert %{"status" => "ok", "response" => %{"hello" => "ana", "room" => "lobby"}} =
             WsClient.join(c, "room:lobby", %{"name" => "ana"})

    :ok = WsClient.push(c, "1", "2", "room:lobby", "ping", %{"n" => 1})

    assert [
             "1",
             "2",
             "room:lobby",
             "phx_reply",
             %{"status" => "ok", "response" => %{"pong" => %{"n" => 1}, "name" => "ana"}}
           ] = WsClient.recv_json(c)

    :ok = Hornbeam.broadcast("room:lobby", "news", %{"text" => "hi"})
    assert [:null, :null, "room:lobby", "news", %{"text" => "hi"}] = recv_event(c)
    WsClient.close(c)
  end

  test "a join the channel refuses gets its error reply", %{port: port} do
    {:ok, c} = WsClient.connect(port)

    assert %{"status" => "error", "response" => %{"reason" => "name required"}} =
             WsClient.join(c, "room:lobby", %{})

    WsClient.close(c)
  end

  test "a channel's broadcast reaches the other clients; broadcast_from skips its own", %{
    port: port
  } do
    {:ok, a} = WsClient.connect(port)
    {:ok, b} = WsClient.connect(port)
    assert %{"status" => "ok"} = WsClient.join(a, "room:x", %{"name" => "a"})
    assert %{"status" => "ok"} = WsClient.join(b, "room:x", %{"name" => "b"})

    :ok = WsClient.push(a, "1", "2", "room:x", "shout", %{"t" => "hey"})
    assert [:null, :null, "room:x", "shout", %{"t" => "hey"}] = recv_event(b)

    # broadcast_from/4 from a pid that is not a channel of the topic: everyone gets it.
    :ok = Hornbeam.broadcast_from(self(), "room:x", "from", %{})
    assert [:null, :null, "room:x", "from", %{}] = recv_event(b)
    WsClient.close(a)
    WsClient.close(b)
  end

  test "Hornbeam.Presence track/update/list/get/untrack from Elixir" do
    topic = "room:presence-#{System.unique_integer([:positive])}"
    assert Hornbeam.Presence.list(topic) == %{}
    assert Hornbeam.Presence.get(topic, "user:ana") == nil

    :ok = Hornbeam.Presence.track(self(), topic, "user:ana", %{"status" => "online"})
    assert {:error, :already_tracked} = Hornbeam.Presence.track(self(), topic, "user:ana", %{})

    assert %{"user:ana" => %{"metas" => [%{"status" => "online", "phx_ref" => ref}]}} =
             Hornbeam.Presence.list(topic)

    :ok = Hornbeam.Presence.update(self(), topic, "user:ana", %{"status" => "away"})

    assert %{"metas" => [%{"status" => "away", "phx_ref_prev" => ^ref}]} =
             Hornbeam.Presence.get(topic, "user:ana")

    :ok = Hornbeam.Presence.untrack(self(), topic, "user:ana")
    assert Hornbeam.Presence.list(topic) == %{}
  end

  test "a presence tracked by an Elixir channel leaves with its client", %{port: port} do
    {:ok, c} = WsClient.connect(port)
    assert %{"status" => "ok"} = WsClient.join(c, "room:p", %{"name" => "zoe"})
    :ok = WsClient.push(c, "1", "2", "room:p", "track", %{"status" => "online"})
    assert ["1", "2", "room:p", "phx_reply", %{"status" => "ok"}] = recv_reply(c)
    assert %{"metas" => [%{"status" => "online"}]} = Hornbeam.Presence.get("room:p", "user:zoe")

    WsClient.close(c)
    assert wait_until(fn -> Hornbeam.Presence.get("room:p", "user:zoe") == nil end)
  end

  # The next message that is not a presence_diff.
  defp recv_event(c) do
    case WsClient.recv_json(c) do
      [_, _, _, "presence_diff", _] -> recv_event(c)
      other -> other
    end
  end

  defp recv_reply(c), do: recv_event(c)

  defp wait_until(fun, tries \\ 50) do
    cond do
      fun.() -> true
      tries == 0 -> false
      true -> Process.sleep(50) && wait_until(fun, tries - 1)
    end
  end
end
