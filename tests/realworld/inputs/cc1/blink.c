typedef unsigned char uint8_t;
typedef unsigned int uint16_t;
#define PORTB (*(volatile uint8_t *)0x25)
#define DDRB (*(volatile uint8_t *)0x24)
static uint16_t crc16(const uint8_t *data, uint16_t len) {
    uint16_t crc = 0xFFFF;
    for (uint16_t i = 0; i < len; i++) {
        crc ^= data[i];
        for (uint8_t b = 0; b < 8; b++)
            crc = (crc & 1) ? (crc >> 1) ^ 0xA001 : crc >> 1;
    }
    return crc;
}
static void delay(uint16_t n) { while (n--) __asm__ volatile ("nop"); }
int main(void) {
    static const uint8_t msg[] = "wasijail";
    DDRB = 0x20;
    for (;;) {
        PORTB ^= (uint8_t)crc16(msg, sizeof msg - 1) & 0x20;
        delay(50000);
    }
}
