defmodule Hornbeam.Test.RoomChannel do
  @moduledoc "An Elixir channel for the tests: the `:hornbeam_channel` behaviour from Elixir."
  @behaviour :hornbeam_channel

  @impl true
  def join("room:" <> room, %{"name" => name}, socket) do
    {:ok, %{"hello" => name, "room" => room}, :hornbeam_channel.assign(socket, :name, name)}
  end

  def join(_topic, _payload, _socket), do: {:error, %{"reason" => "name required"}}

  @impl true
  def handle_in("ping", payload, socket) do
    {:reply, {:ok, %{"pong" => payload, "name" => socket.assigns.name}}, socket}
  end

  def handle_in("shout", payload, socket) do
    :ok = :hornbeam_channel.broadcast(socket, "shout", payload)
    {:reply, :ok, socket}
  end

  def handle_in("track", %{"status" => status}, socket) do
    name = socket.assigns.name
    :ok = Hornbeam.Presence.track(self(), socket.topic, "user:" <> name, %{"status" => status})
    {:reply, :ok, socket}
  end

  def handle_in(_event, _payload, socket),
    do: {:reply, {:error, %{"reason" => "unknown event"}}, socket}
end
