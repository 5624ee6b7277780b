defmodule Hornbeam.Presence do
  @moduledoc """
  Presence from Elixir: who is on a topic, replicated across the cluster.
  Delegates to the Erlang module `:hornbeam_presence`.

  A presence belongs to the process that tracked it (usually a channel
  process): when that process exits, its presences leave. Presence runs
  once serving has started (`Hornbeam.start/2`).

      :ok = Hornbeam.Presence.track(self(), "room:lobby", "user:ana", %{"status" => "online"})
      %{"user:ana" => %{"metas" => [%{"status" => "online", "phx_ref" => _}]}} =
        Hornbeam.Presence.list("room:lobby")

  Lists have Phoenix's shape: `%{key => %{"metas" => [meta]}}`, each meta
  carrying its `"phx_ref"`.

  Bad arguments are `{:error, reason}` for the caller and never reach the
  tracker: `{:bad_owner, o}`, `{:bad_topic, t}`, `{:bad_key, k}` (topics and
  keys are UTF-8 strings), `:meta_must_be_a_map`, `:meta_not_json`.
  """

  @typedoc "A presence key, e.g. `\"user:ana\"`."
  @type key :: String.t()
  @typedoc "A presence's meta: a JSON-compatible map, or `{:json, iodata}` already encoded."
  @type meta :: %{optional(String.t()) => term()} | {:json, iodata()}
  @typedoc "What `get/2` returns for one key: `%{\"metas\" => [meta]}`."
  @type entry :: %{String.t() => [map()]}

  @doc """
  Track `key` on `topic` for the process `owner`. Tracking the same
  `{owner, topic, key}` twice is `{:error, :already_tracked}`. The presence
  limits give `{:error, :meta_too_large}` (`max_presence_meta_size`),
  `{:error, :too_many_presences_per_socket}` and
  `{:error, :too_many_presences_per_topic}` (see the README's presence options).
  """
  @spec track(pid(), String.t(), key(), meta()) :: :ok | {:error, term()}
  def track(owner, topic, key, meta), do: :hornbeam_presence.track(owner, topic, key, meta)

  @doc "Replace the meta of a presence tracked by `owner` (clients see `phx_ref_prev`)."
  @spec update(pid(), String.t(), key(), meta()) :: :ok | {:error, term()}
  def update(owner, topic, key, meta), do: :hornbeam_presence.update(owner, topic, key, meta)

  @doc "Stop tracking `key` on `topic` for `owner`."
  @spec untrack(pid(), String.t(), key()) :: :ok | {:error, term()}
  def untrack(owner, topic, key), do: :hornbeam_presence.untrack(owner, topic, key)

  @doc "Everyone on `topic`: `%{key => %{\"metas\" => [meta]}}` (empty map when nobody is)."
  @spec list(String.t()) :: %{key() => entry()} | {:error, term()}
  def list(topic), do: :hornbeam_presence.list(topic)

  @doc "The presence of `key` on `topic`, or `nil` when it is not there."
  @spec get(String.t(), key()) :: entry() | nil | {:error, term()}
  def get(topic, key) do
    case :hornbeam_presence.get(topic, key) do
      :undefined -> nil
      entry -> entry
    end
  end
end
