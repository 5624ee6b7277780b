defmodule Hornbeam do
  @moduledoc """
  Elixir face of Hornbeam Channels & Presence. The application itself is the
  Erlang module `:hornbeam`; these functions delegate to it.

      Hornbeam.start("chat:app", %{channel_modules: ["chat"], bind: "127.0.0.1:8000"})
      Hornbeam.broadcast("room:lobby", "new_msg", %{"body" => "hi"})
      Hornbeam.disconnect("user:42")
      Hornbeam.stop()
  """

  @type payload :: map() | list() | String.t() | number() | boolean() | nil | {:json, iodata()}

  @doc "Start serving `app_spec` (`\"module:attr\"`, or `:none` for channels only)."
  @spec start(:none | String.t(), map()) :: :ok | {:error, term()}
  def start(app_spec, opts \\ %{}), do: :hornbeam.start(app_spec, opts)

  @doc "Stop the listener, its connections and the Python workers."
  @spec stop() :: :ok | {:error, :not_started}
  def stop, do: :hornbeam.stop()

  @doc "The TCP port being served."
  @spec port() :: :inet.port_number()
  def port, do: :hornbeam.port()

  @doc """
  Send `event` with `payload` to every subscriber of `topic` in the cluster.

  Bad arguments are an error here, never a crash elsewhere:
  `{:error, {:bad_topic, t}}`, `{:error, {:bad_event, e}}` (topics and events
  are UTF-8 strings, not atoms), `{:error, {:not_json, payload}}`.
  """
  @spec broadcast(String.t(), String.t(), payload()) :: :ok | {:error, term()}
  def broadcast(topic, event, payload), do: :hornbeam.broadcast(topic, event, payload)

  @doc "Like `broadcast/3`, except to the client of the channel process `from` (`{:error, {:bad_from, from}}` if not a pid)."
  @spec broadcast_from(pid(), String.t(), String.t(), payload()) :: :ok | {:error, term()}
  def broadcast_from(from, topic, event, payload),
    do: :hornbeam.broadcast_from(from, topic, event, payload)

  @doc "Like `broadcast/3`, to this node's subscribers only."
  @spec local_broadcast(String.t(), String.t(), payload()) :: :ok | {:error, term()}
  def local_broadcast(topic, event, payload), do: :hornbeam.local_broadcast(topic, event, payload)

  @doc """
  Close every WebSocket whose connect returned `socket_id` (`{:ok, assigns, "user:42"}`;
  Python `('ok', assigns, "user:42")`), on every node: log a user out everywhere.
  The clients reconnect and their next connect decides. `{:error, {:bad_socket_id, id}}`
  unless `socket_id` is a non-empty string of at most 255 bytes.
  """
  @spec disconnect(String.t()) :: :ok | {:error, {:bad_socket_id, term()}}
  def disconnect(socket_id), do: :hornbeam.disconnect(socket_id)
end
