defmodule Hornbeam.DisconnectTest do
  # Socket ids from an Elixir connect function, and Hornbeam.disconnect/1.
  # Starts and stops the endpoint, so it runs alone.
  use ExUnit.Case, async: false

  alias Hornbeam.Test.{RoomChannel, WsClient}

  setup do
    connect = fn
      %{"user" => user}, _info -> {:ok, %{"user" => user}, "user:" <> user}
      _params, _info -> {:ok, %{}, nil}
    end

    :ok =
      Hornbeam.start(:none, %{
        bind: "127.0.0.1:0",
        channels: [{"room:*", RoomChannel}],
        connect: connect
      })

    on_exit(fn -> Hornbeam.stop() end)
    %{port: Hornbeam.port()}
  end

  test "Hornbeam.disconnect closes the sockets with that id and no other", %{port: port} do
    {:ok, ana} = WsClient.connect(port, "/ws?vsn=2.0.0&user=ana")
    {:ok, bob} = WsClient.connect(port, "/ws?vsn=2.0.0&user=bob")
    {:ok, anon} = WsClient.connect(port)

    for c <- [ana, bob, anon] do
      assert %{"status" => "ok"} = WsClient.join(c, "room:lobby", %{"name" => "x"})
    end

    assert :ok = Hornbeam.disconnect("user:ana")
    assert {:close, 4000, "disconnected"} = WsClient.recv_json(ana)
    assert :closed = WsClient.recv_json(ana)

    for c <- [bob, anon] do
      :ok = WsClient.push(c, "1", "2", "room:lobby", "ping", %{})
      assert ["1", "2", "room:lobby", "phx_reply", %{"status" => "ok"}] = WsClient.recv_json(c)
    end
  end

  test "a socket id that is not a non-empty string is an error" do
    assert {:error, {:bad_socket_id, :ana}} = Hornbeam.disconnect(:ana)
    assert {:error, {:bad_socket_id, ""}} = Hornbeam.disconnect("")
    assert {:error, {:bad_socket_id, 'user:1'}} = Hornbeam.disconnect('user:1')
  end
end
