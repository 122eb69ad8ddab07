import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { locationText } from "../../../src/channels/telegram/translate.js";
import { coordinatesFromText, zoneFromAnswer, zoneFromLocation } from "../../../src/features/coaching/zones.js";

describe("coaching time zones", () => {
  test("a location maps to the IANA zone there; out-of-range coordinates to none", () => {
    assert.equal(zoneFromLocation(52.52, 13.405), "Europe/Berlin");
    assert.equal(zoneFromLocation(55.7558, 37.6173), "Europe/Moscow");
    assert.equal(zoneFromLocation(43.1155, 131.8855), "Asia/Vladivostok");
    assert.equal(zoneFromLocation(40.7128, -74.006), "America/New_York");
    assert.equal(zoneFromLocation(91, 0), null);
    assert.equal(zoneFromLocation(0, 181), null);
  });

  test("a stored location's text and typed coordinates read back; other text does not", () => {
    assert.deepEqual(coordinatesFromText(locationText(56.838926, 60.605703)), { latitude: 56.838926, longitude: 60.605703 });
    assert.deepEqual(coordinatesFromText("52.52, 13.40"), { latitude: 52.52, longitude: 13.4 });
    assert.equal(coordinatesFromText("Berlin"), null);
    assert.equal(coordinatesFromText("20:00"), null);
    assert.equal(zoneFromAnswer("берлин"), "Europe/Berlin");
  });
});
