defmodule Hornbeam.Test.WsClient do
  @moduledoc """
  A tiny WebSocket client for the ExUnit tests, over `:gen_tcp`. A linked
  process owns the socket, masks what it sends, and forwards each text frame
  it receives to its owner as `{:ws, client, {:text, binary}}` (`{:ws, client,
  :closed}` at the end). Channel messages are Phoenix V2 arrays
  `[join_ref, ref, topic, event, payload]`, JSON through the NIF.
  """

  @timeout 5_000

  @doc "Connect to ws://127.0.0.1:`port``path` and complete the upgrade."
  def connect(port, path \\ "/ws?vsn=2.0.0") do
    owner = self()
    ref = make_ref()
    pid = spawn_link(fn -> init(owner, ref, port, path) end)

    receive do
      {^ref, :ok} -> {:ok, pid}
      {^ref, {:error, _} = error} -> error
    after
      @timeout -> {:error, :connect_timeout}
    end
  end

  @doc "Send a channel message; `payload` is a JSON term."
  def push(client, join_ref, ref, topic, event, payload) do
    {:ok, json} = :hornbeam_nif.json_encode([join_ref, ref, topic, event, payload])
    send(client, {:send, frame(1, IO.iodata_to_binary(json))})
    :ok
  end

  @doc "Join `topic`; returns the `phx_reply` payload."
  def join(client, topic, params, join_ref \\ "1") do
    :ok = push(client, join_ref, join_ref, topic, "phx_join", params)
    [^join_ref, ^join_ref, ^topic, "phx_reply", reply] = recv_json(client)
    reply
  end

  @doc "The next channel message, skipping the `presence_state` sent after each join."
  def recv_json(client, timeout \\ @timeout) do
    case recv_all_json(client, timeout) do
      [_, _, _, "presence_state", _] -> recv_json(client, timeout)
      other -> other
    end
  end

  @doc "The next channel message (decoded), `:closed` or `:timeout`."
  def recv_all_json(client, timeout \\ @timeout) do
    receive do
      {:ws, ^client, {:text, text}} ->
        {:ok, list} = :hornbeam_nif.json_decode(text)
        list

      {:ws, ^client, other} ->
        other
    after
      timeout -> :timeout
    end
  end

  def close(client) do
    send(client, :close)
    :ok
  end

  # --- the socket's process --------------------------------------------------

  defp init(owner, ref, port, path) do
    {:ok, sock} = :gen_tcp.connect({127, 0, 0, 1}, port, [:binary, active: false, packet: :raw])
    key = Base.encode64(:crypto.strong_rand_bytes(16))

    :ok =
      :gen_tcp.send(sock, [
        "GET #{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n",
        "Connection: Upgrade\r\nSec-WebSocket-Key: #{key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
      ])

    case read_head(sock, "") do
      {"HTTP/1.1 101" <> _, rest} ->
        send(owner, {ref, :ok})
        :ok = :inet.setopts(sock, active: :once)
        loop(owner, sock, rest)

      {status_line, _rest} ->
        send(owner, {ref, {:error, {:status, status_line}}})
    end
  end

  defp read_head(sock, acc) do
    case :binary.split(acc, "\r\n\r\n") do
      [head, rest] ->
        [status_line | _] = String.split(head, "\r\n")
        {status_line, rest}

      [_] ->
        case :gen_tcp.recv(sock, 0, @timeout) do
          {:ok, more} -> read_head(sock, acc <> more)
          {:error, reason} -> {"error #{reason}", ""}
        end
    end
  end

  defp loop(owner, sock, buffer) do
    rest = deliver(owner, buffer)

    receive do
      {:tcp, ^sock, data} ->
        :ok = :inet.setopts(sock, active: :once)
        loop(owner, sock, rest <> data)

      {:tcp_closed, ^sock} ->
        send(owner, {:ws, self(), :closed})

      {:tcp_error, ^sock, _} ->
        send(owner, {:ws, self(), :closed})

      {:send, bytes} ->
        _ = :gen_tcp.send(sock, bytes)
        loop(owner, sock, rest)

      :close ->
        :gen_tcp.close(sock)
    end
  end

  # Server frames are unmasked; deliver every complete one.
  defp deliver(owner, <<_fin::1, _rsv::3, op::4, 0::1, len7::7, rest::binary>> = buffer) do
    case length_and_payload(len7, rest) do
      {len, payload_and_tail} when byte_size(payload_and_tail) >= len ->
        <<payload::binary-size(len), tail::binary>> = payload_and_tail
        send(owner, {:ws, self(), decode_frame(op, payload)})
        deliver(owner, tail)

      _ ->
        buffer
    end
  end

  defp deliver(_owner, buffer), do: buffer

  defp length_and_payload(126, <<len::16, rest::binary>>), do: {len, rest}
  defp length_and_payload(127, <<len::64, rest::binary>>), do: {len, rest}
  defp length_and_payload(n, rest) when n < 126, do: {n, rest}
  defp length_and_payload(_, _), do: :more

  defp decode_frame(1, payload), do: {:text, payload}
  defp decode_frame(8, <<code::16, reason::binary>>), do: {:close, code, reason}
  defp decode_frame(8, _), do: {:close, nil, ""}
  defp decode_frame(9, payload), do: {:ping, payload}
  defp decode_frame(op, payload), do: {:other, op, payload}

  # A masked client frame.
  defp frame(opcode, payload) do
    mask = :crypto.strong_rand_bytes(4)
    len = byte_size(payload)

    len_bits =
      cond do
        len < 126 -> <<1::1, len::7>>
        len < 65_536 -> <<1::1, 126::7, len::16>>
        true -> <<1::1, 127::7, len::64>>
      end

    <<1::1, 0::3, opcode::4, len_bits::bits, mask::binary, mask(payload, mask)::binary>>
  end

  defp mask(payload, mask) do
    for {byte, i} <- Enum.with_index(:binary.bin_to_list(payload)), into: <<>> do
      <<Bitwise.bxor(byte, :binary.at(mask, rem(i, 4)))>>
    end
  end
end
