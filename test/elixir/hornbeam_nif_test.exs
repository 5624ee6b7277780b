defmodule Hornbeam.NifTest do
  use ExUnit.Case, async: true

  test "the NIF built by mix's compiler step loads and decodes a channel message" do
    msg = ~s(["1","2","room:lobby","phx_join",{"name":"Ana"}])

    assert {:ok, {"1", "2", "room:lobby", "phx_join", ~s({"name":"Ana"})}} =
             :hornbeam_nif.msg_decode(msg, 64)
  end

  test "JSON round trip through the NIF" do
    {:ok, json} = :hornbeam_nif.json_encode(%{"a" => [1, 2.5, true, nil, "x"]})
    assert {:ok, %{"a" => [1, 2.5, true, :null, "x"]}} = :hornbeam_nif.json_decode(json)
  end

  test "router captures wildcard segments" do
    {:ok, router} = :hornbeam_nif.router_new(["room:*"], 255)
    assert {:ok, 0, %{"room_id" => "lobby"}} = :hornbeam_nif.router_match(router, "room:lobby")
  end
end
