import tzLookup from "@photostructure/tz-lookup";
import { isTimeZone } from "./rules.js";

/**
 * Common cities (Russian and English names, lower case) and their IANA zones, for the
 * onboarding's time zone step. Anything else must be an IANA name.
 */
const CITIES: Record<string, string> = {
  москва: "Europe/Moscow",
  moscow: "Europe/Moscow",
  мск: "Europe/Moscow",
  "санкт-петербург": "Europe/Moscow",
  петербург: "Europe/Moscow",
  питер: "Europe/Moscow",
  спб: "Europe/Moscow",
  "saint petersburg": "Europe/Moscow",
  "st petersburg": "Europe/Moscow",
  казань: "Europe/Moscow",
  "нижний новгород": "Europe/Moscow",
  воронеж: "Europe/Moscow",
  "ростов-на-дону": "Europe/Moscow",
  краснодар: "Europe/Moscow",
  сочи: "Europe/Moscow",
  ярославль: "Europe/Moscow",
  калининград: "Europe/Kaliningrad",
  kaliningrad: "Europe/Kaliningrad",
  самара: "Europe/Samara",
  samara: "Europe/Samara",
  ижевск: "Europe/Samara",
  волгоград: "Europe/Volgograd",
  саратов: "Europe/Saratov",
  екатеринбург: "Asia/Yekaterinburg",
  yekaterinburg: "Asia/Yekaterinburg",
  челябинск: "Asia/Yekaterinburg",
  пермь: "Asia/Yekaterinburg",
  уфа: "Asia/Yekaterinburg",
  тюмень: "Asia/Yekaterinburg",
  омск: "Asia/Omsk",
  новосибирск: "Asia/Novosibirsk",
  novosibirsk: "Asia/Novosibirsk",
  томск: "Asia/Tomsk",
  барнаул: "Asia/Barnaul",
  красноярск: "Asia/Krasnoyarsk",
  иркутск: "Asia/Irkutsk",
  чита: "Asia/Chita",
  якутск: "Asia/Yakutsk",
  владивосток: "Asia/Vladivostok",
  vladivostok: "Asia/Vladivostok",
  хабаровск: "Asia/Vladivostok",
  магадан: "Asia/Magadan",
  "петропавловск-камчатский": "Asia/Kamchatka",
  минск: "Europe/Minsk",
  minsk: "Europe/Minsk",
  киев: "Europe/Kyiv",
  київ: "Europe/Kyiv",
  kyiv: "Europe/Kyiv",
  kiev: "Europe/Kyiv",
  алматы: "Asia/Almaty",
  almaty: "Asia/Almaty",
  астана: "Asia/Almaty",
  ташкент: "Asia/Tashkent",
  tashkent: "Asia/Tashkent",
  бишкек: "Asia/Bishkek",
  тбилиси: "Asia/Tbilisi",
  tbilisi: "Asia/Tbilisi",
  ереван: "Asia/Yerevan",
  yerevan: "Asia/Yerevan",
  баку: "Asia/Baku",
  baku: "Asia/Baku",
  кишинёв: "Europe/Chisinau",
  кишинев: "Europe/Chisinau",
  рига: "Europe/Riga",
  riga: "Europe/Riga",
  вильнюс: "Europe/Vilnius",
  vilnius: "Europe/Vilnius",
  таллин: "Europe/Tallinn",
  tallinn: "Europe/Tallinn",
  хельсинки: "Europe/Helsinki",
  helsinki: "Europe/Helsinki",
  берлин: "Europe/Berlin",
  berlin: "Europe/Berlin",
  мюнхен: "Europe/Berlin",
  munich: "Europe/Berlin",
  münchen: "Europe/Berlin",
  гамбург: "Europe/Berlin",
  hamburg: "Europe/Berlin",
  франкфурт: "Europe/Berlin",
  frankfurt: "Europe/Berlin",
  вена: "Europe/Vienna",
  vienna: "Europe/Vienna",
  wien: "Europe/Vienna",
  прага: "Europe/Prague",
  prague: "Europe/Prague",
  варшава: "Europe/Warsaw",
  warsaw: "Europe/Warsaw",
  париж: "Europe/Paris",
  paris: "Europe/Paris",
  лондон: "Europe/London",
  london: "Europe/London",
  мадрид: "Europe/Madrid",
  madrid: "Europe/Madrid",
  барселона: "Europe/Madrid",
  barcelona: "Europe/Madrid",
  рим: "Europe/Rome",
  rome: "Europe/Rome",
  милан: "Europe/Rome",
  milan: "Europe/Rome",
  амстердам: "Europe/Amsterdam",
  amsterdam: "Europe/Amsterdam",
  брюссель: "Europe/Brussels",
  brussels: "Europe/Brussels",
  цюрих: "Europe/Zurich",
  zurich: "Europe/Zurich",
  стокгольм: "Europe/Stockholm",
  stockholm: "Europe/Stockholm",
  осло: "Europe/Oslo",
  oslo: "Europe/Oslo",
  копенгаген: "Europe/Copenhagen",
  copenhagen: "Europe/Copenhagen",
  лиссабон: "Europe/Lisbon",
  lisbon: "Europe/Lisbon",
  афины: "Europe/Athens",
  athens: "Europe/Athens",
  белград: "Europe/Belgrade",
  belgrade: "Europe/Belgrade",
  стамбул: "Europe/Istanbul",
  istanbul: "Europe/Istanbul",
  анталья: "Europe/Istanbul",
  дубай: "Asia/Dubai",
  dubai: "Asia/Dubai",
  "нью-йорк": "America/New_York",
  "new york": "America/New_York",
  бангкок: "Asia/Bangkok",
  bangkok: "Asia/Bangkok",
  пхукет: "Asia/Bangkok",
  бали: "Asia/Makassar",
  bali: "Asia/Makassar",
};

/**
 * The IANA zone a user's answer names: a city of the table, or an IANA name itself
 * (`Europe/Berlin`, any letter case).
 * @returns the zone, or null when the answer names none
 */
export function zoneFromAnswer(answer: string): string | null {
  const key = answer
    .trim()
    .toLowerCase()
    .replace(/ё/g, "е")
    .replace(/^г\.\s*/, "")
    .replace(/[.!]+$/, "");
  const city = CITIES[key] ?? CITIES[answer.trim().toLowerCase()];
  if (city) return city;
  const raw = answer.trim();
  if (!/^[A-Za-z_]+(\/[A-Za-z0-9_+-]+){1,2}$/.test(raw) && raw !== "UTC") return null;
  if (!isTimeZone(raw)) return null;
  // Intl accepts any letter case; store the canonical spelling.
  return new Intl.DateTimeFormat("en", { timeZone: raw }).resolvedOptions().timeZone;
}

/**
 * The IANA zone at a point on Earth (a shared location), from the time zone boundaries bundled
 * with `@photostructure/tz-lookup` (offline; over the sea, the nautical zone `Etc/GMT±N`).
 * @param latitude degrees WGS84, -90 … 90
 * @param longitude degrees WGS84, -180 … 180
 * @returns the zone, or null for coordinates out of range or a zone this Node.js does not know
 */
export function zoneFromLocation(latitude: number, longitude: number): string | null {
  if (!(Math.abs(latitude) <= 90 && Math.abs(longitude) <= 180)) return null;
  try {
    const zone = tzLookup(latitude, longitude);
    return isTimeZone(zone) ? zone : null;
  } catch {
    return null;
  }
}

/**
 * Coordinates written as text: a stored shared location (`📍 52.520008, 13.404954`, see the
 * Telegram translation) or a user typing `52.52, 13.40`.
 * @returns degrees, or null when the text is not a latitude and longitude pair
 */
export function coordinatesFromText(text: string): { latitude: number; longitude: number } | null {
  const m = /^(?:📍\s*)?(-?\d{1,2}(?:\.\d+)?)\s*,\s*(-?\d{1,3}(?:\.\d+)?)$/u.exec(text.trim());
  return m ? { latitude: Number(m[1]), longitude: Number(m[2]) } : null;
}
